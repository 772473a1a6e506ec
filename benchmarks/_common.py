"""What the `bench_*.py` scripts share: the simulator as a child process, `rebase` as a child
process with its exact CPU time and peak memory, and a line describing the machine.

The CLI child is reaped with `os.wait4`, which returns the kernel's own resource usage of that
process (user and system CPU seconds, peak RSS) without sampling, so short peaks are not missed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from rebase_cli.sim.spawn import SpawnedSimulator, spawn

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REBASE = [sys.executable, "-m", "rebase_cli"]


def data_env() -> dict[str, str]:
    return {"REBASE_DATA_DIR": os.environ.get("REBASE_DATA_DIR") or str(SHARED_DATA)}


def start_simulator(*flags: str, role: str = "both") -> SpawnedSimulator:
    """A simulator child on a free port serving GSM8K (`flags` add e.g. latency modelling)."""
    return spawn(
        ["--role", role, "--port", "0", "--dataset", "gsm8k", *flags],
        env=data_env(),
        stderr=subprocess.DEVNULL,
    )


def sim_stats(url: str) -> dict:
    return httpx.get(f"{url}/sim/stats", timeout=10).json()


def sim_reset(url: str) -> None:
    httpx.post(f"{url}/sim/reset", timeout=10).raise_for_status()


def model_requests(stats: dict) -> int:
    """Completion and scoring requests the simulator has received (health/model probes are
    not counted by the simulator)."""
    return sum(stats["requests"].values())


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def search_args(
    policy: str,
    reward: str,
    *,
    problems: int,
    budget: int,
    extra: Sequence[str] = (),
) -> list[str]:
    """`rebase search` of the first `problems` GSM8K problems. The pre-run server check is
    skipped: its probes (one seeded request sent twice on purpose) are not the search's work
    and would count in every request and duplicate-sample figure."""
    return [
        "search",
        "--skip-check",
        "--dataset",
        "gsm8k",
        "--budget",
        str(budget),
        "--limit",
        str(problems),
        "--policy",
        policy,
        "--reward",
        reward,
        "--seed",
        "0",
        "--json",
        *extra,
    ]


@dataclass
class CliResult:
    """One `rebase` child: exit code, output, wall seconds and its kernel-reported usage."""

    returncode: int
    stdout: str
    stderr: str
    wall: float
    user: float
    system: float
    max_rss_mib: float
    started: float  # time.monotonic() just before the child was started

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def summary(self) -> dict:
        """The `--json` summary of a `rebase search`."""
        if self.returncode != 0:
            raise SystemExit(f"rebase exited {self.returncode}:\n{self.stderr[-2000:]}")
        return json.loads(self.stdout)


class CliChild:
    """`rebase ARGS` started in the background (stdout/stderr to temporary files)."""

    def __init__(self, db: Path, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        # Files, not pipes: a child writing a lot can never block on a full pipe. wait()
        # closes them.
        self._out = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err = tempfile.TemporaryFile("w+")  # noqa: SIM115
        full_env = {k: v for k, v in os.environ.items() if k != "REBASE_DB"}
        full_env.update(data_env(), REBASE_DB=str(db), NO_COLOR="1", COLUMNS="200")
        full_env.update(env or {})
        self._reaped: tuple[int, os.struct_rusage, float] | None = None  # wait4's answer
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*REBASE, *args],
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def interrupt(self) -> None:
        """SIGINT, what Ctrl-C sends (if the child still runs)."""
        if self.running():
            self.process.send_signal(signal.SIGINT)

    def running(self) -> bool:
        """Whether the child still runs. Reaps it with wait4 once it has exited: never call
        `self.process.poll()`, whose waitpid would lose the child's resource usage."""
        if self._reaped is None:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid == 0:
                return True
            self._reaped = (status, usage, time.monotonic() - self.started)
        return False

    def wait(self) -> CliResult:
        """Reap the child with wait4 (its exact CPU time and peak RSS) and collect its output."""
        if self._reaped is None:
            _, status, usage = os.wait4(self.process.pid, 0)
            self._reaped = (status, usage, time.monotonic() - self.started)
        status, usage, wall = self._reaped
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._out.seek(0)
        self._err.seek(0)
        result = CliResult(
            returncode=self.process.returncode,
            stdout=self._out.read(),
            stderr=self._err.read(),
            wall=wall,
            user=usage.ru_utime,
            system=usage.ru_stime,
            max_rss_mib=usage.ru_maxrss / 1024,  # Linux reports KiB
            started=self.started,
        )
        self._out.close()
        self._err.close()
        return result


def run_cli(db: Path, args: Sequence[str], env: dict[str, str] | None = None) -> CliResult:
    return CliChild(db, args, env).wait()


def machine() -> str:
    """CPU model, cores, load, Python and date: the context every figure needs."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores (load {load}), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM, Python {platform.python_version()}, "
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


def add_gpu_model_options(
    parser: argparse.ArgumentParser, *, output_token_ms: float = 40.0, max_running: int = 256
) -> None:
    """The simulator's GPU cost model as options (see bench_server_busy.py for what it models)."""
    parser.add_argument("--base-ms", type=float, default=20.0)
    parser.add_argument("--prompt-token-ms", type=float, default=0.4)
    parser.add_argument("--output-token-ms", type=float, default=output_token_ms)
    parser.add_argument("--max-running", type=int, default=max_running)


def gpu_model_flags(args: argparse.Namespace) -> list[str]:
    """The simulator flags of the options `add_gpu_model_options` added."""
    return [
        *("--base-ms", str(args.base_ms), "--prompt-token-ms", str(args.prompt_token_ms)),
        *("--output-token-ms", str(args.output_token_ms), "--max-running", str(args.max_running)),
    ]


def gpu_model_text(args: argparse.Namespace) -> str:
    """The GPU cost model in words, for a header."""
    return (
        f"{args.base_ms} ms + {args.prompt_token_ms} ms/uncached prompt token + "
        f"{args.output_token_ms} ms/output token, {args.max_running} running sequences"
    )


def header(title: str) -> None:
    print(f"== {title}")
    print(f"machine: {machine()}")
