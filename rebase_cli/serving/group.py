"""`python -m rebase_cli.serving.group`: the supervisor of a router group (see `router`).

It starts the plan's workers (children in its own process group, their output in its log),
waits until each answers /health, starts the SGLang router in front of them and of the plan's
external URLs, then watches: a worker that exits is reported (the router's health checks and
retries take it out of the rotation) and the group keeps serving while the router and at least
one worker live. It exits when the router exits, when every worker it started is gone, or on
SIGTERM/SIGINT; whichever way, every child is stopped first.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from types import FrameType

from rebase_cli.errors import RebaseError
from rebase_cli.serving import health, launchers, net
from rebase_cli.serving.router import GroupPlan, router_command

WATCH_INTERVAL_S = 0.5
CHILD_GRACE_S = 10.0
PREFIX = "rebase-group"


@dataclass
class Child:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    reported: bool = False


def say(text: str) -> None:
    print(f"{PREFIX}: {text}", flush=True)


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Same process group as the supervisor, output into its log: one group, one log.
    return subprocess.Popen(argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL)


def worker_command(launcher: launchers.Launcher, spec: launchers.ServeSpec) -> list[str]:
    """The worker's command line. Simulator workers imitate SGLang servers: the SGLang router
    learns each worker's model from its /server_info, which only the SGLang flavours serve
    (and a real SGLang worker ignores seeds unless started deterministic)."""
    argv = launcher.command(spec)
    if spec.engine == "sim" and "--flavour" not in argv:
        argv += launchers.sim_sglang_flags(spec, "sglang")
    return argv


def start_workers(plan: GroupPlan, host: str) -> list[Child]:
    """Start the plan's workers, each on a free port (and its own GPUs for SGLang)."""
    if not plan.replicas:
        return []
    launcher = launchers.get_launcher(plan.worker.engine)
    workers = []
    for index in range(plan.replicas):
        spec = replace(plan.worker, host=host, port=net.free_port(host))
        env = dict(launcher.env(spec))
        if plan.gpus_per_worker:
            first = index * plan.gpus_per_worker
            gpus = range(first, first + plan.gpus_per_worker)
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpus)
        process = _start(worker_command(launcher, spec), env)
        url = net.base_url(host, spec.port or 0)
        workers.append(Child(f"worker {index}", url, process))
        say(f"worker {index} pid {process.pid} at {url}")
    return workers


def wait_for_workers(workers: list[Child], timeout: float) -> None:
    for worker in workers:
        seconds = health.wait_until_healthy(
            worker.url, timeout=timeout, exit_code=worker.process.poll, what=worker.name
        )
        say(f"{worker.name} ready at {worker.url} ({seconds:.1f} s)")


def watch(router: Child, workers: list[Child]) -> int:
    """Report workers that exit; return the exit code once the group cannot serve."""
    while True:
        for worker in workers:
            code = worker.process.poll()
            if code is not None and not worker.reported:
                worker.reported = True
                say(
                    f"{worker.name} at {worker.url} exited with code {code}; the router routes "
                    "around it"
                )
        code = router.process.poll()
        if code is not None:
            say(f"the router exited with code {code}; stopping the group")
            return code or 1
        if workers and all(w.reported for w in workers):
            say("every worker has exited; stopping the group")
            return 1
        time.sleep(WATCH_INTERVAL_S)


def stop_all(children: list[Child]) -> None:
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    deadline = time.monotonic() + CHILD_GRACE_S
    for child in children:
        try:
            child.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rebase_cli.serving.group")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", required=True, help="a GroupPlan as JSON")
    args = parser.parse_args(argv)
    plan = GroupPlan.from_json(args.plan)
    signal.signal(signal.SIGTERM, _interrupt)
    children: list[Child] = []
    try:
        workers = start_workers(plan, args.host)
        children.extend(workers)
        wait_for_workers(workers, plan.worker_timeout)
        urls = [w.url for w in workers] + list(plan.worker_urls)
        router_argv = router_command(args.host, args.port, urls)
        router = Child("router", net.base_url(args.host, args.port), _start(router_argv, {}))
        children.append(router)
        say(f"router pid {router.process.pid} at {router.url} in front of {', '.join(urls)}")
        return watch(router, workers)
    except KeyboardInterrupt:
        say("stopping the group")
        return 0
    except RebaseError as exc:
        say(f"error: {exc.one_line()}")
        return 1
    finally:
        stop_all(children)


if __name__ == "__main__":
    sys.exit(main())
