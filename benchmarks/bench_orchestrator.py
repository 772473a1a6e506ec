"""Orchestrator throughput: tree nodes per second `rebase search` sustains against the
simulator with latency modelling off, and the CPU time per node spent in our own process,
against a baseline commit measured in the same run.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_orchestrator.py
        [--problems 100] [--budget 16] [--concurrency 32] [--flavour vllm] [--baseline REV|none]
        [--repeat 1] [--no-profile] [--top 15] [--json]

The simulator runs as its own process (`python -m rebase_cli.sim`, answers at once), so its CPU
is not ours. `--flavour` picks the server it plays (vllm, or sglang-deterministic: SGLang with
--enable-deterministic-inference, where a level's children go in one native /generate batch).
The same search (same seed, so the same tree: the node counts must agree) runs on fresh
databases:

  1. `rebase search ... --json` as a child process, as a user runs it: wall time of the search
     (from its summary), nodes/s, and the child's CPU time from the kernel (wait4), which also
     includes interpreter start-up and imports;
  2. in-process searches (`runner.service.run_search`, no progress display, imports done
     before the clock starts; `inprocess_search.py` as a child process): first on a git
     worktree of `--baseline` (default HEAD~1; `none` skips it) in a temporary directory, then
     on this checkout, both against the same simulator (`--repeat N`: N of each, alternated,
     and the run of median CPU time of each tree reported). Our CPU time per node
     (`time.process_time`, all threads) before and after, their ratio, nodes/s, and each goal
     figure of the orchestrator-efficiency issue with PASS or MISS;
  3. the same search under cProfile in this process (every thread, merged), printing the top
     functions by cumulative and by own time so the hot spots are visible. Profiling slows the
     run down; its times are only for ranking.

Baseline for the server: the simulator's own CPU time per node (psutil, before and after each
search), which bounds what any client could get from this server on these cores. On a machine
shared with other work, compare CPU times and ratios from the same run rather than wall times
or figures from other runs. `--json` prints the figures as one JSON object on stdout (the text
goes to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from _common import (
    cpu_seconds,
    data_env,
    header,
    model_requests,
    run_cli,
    search_args,
    sim_reset,
    sim_stats,
    start_simulator,
)

from rebase_cli.runner import event_loop
from rebase_cli.runner.context import NoEvents
from rebase_cli.runner.service import EndpointRequest, run_search
from rebase_cli.runner.setup import RunRequest
from rebase_cli.store import aggregates as repo
from rebase_cli.store.database import Database


def search_in_process(db_path: Path, url: str, args: argparse.Namespace) -> dict:
    """One search through the service layer (what the CLI calls), without progress output."""
    db = Database.open(db_path)
    request = RunRequest(
        dataset="gsm8k",
        overrides={
            "budget": args.budget,
            "limit": args.problems,
            "concurrency": args.concurrency,
            "seed": 0,
        },
    )
    endpoints = EndpointRequest(policy=url, reward=url, check=False)  # as --skip-check
    prepared, outcome = event_loop.run(run_search(db, request, endpoints, lambda _: NoEvents()))
    totals = repo.run_totals(db, prepared.run.id)
    db.close()
    if outcome.aborted or totals["failed"]:
        raise SystemExit(f"search failed: {outcome.aborted or outcome.failures[:3]}")
    return totals


class ThreadedProfile:
    """A CPU profile of the main thread and of every thread started while it is on (the runner
    commits levels in `asyncio.to_thread` workers, which a plain cProfile never sees). The
    clock is each thread's CPU time, so time spent waiting (epoll, an idle worker's queue, a
    lock) is not counted: the figures are what our process computes."""

    def __init__(self) -> None:
        self.main = cProfile.Profile(time.thread_time)
        self.threads: list[cProfile.Profile] = []

    def _start_in_thread(self, *_: object) -> None:
        profile = cProfile.Profile(time.thread_time)
        self.threads.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread's life

    def __enter__(self) -> ThreadedProfile:
        threading.setprofile(self._start_in_thread)
        self.main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.main)
        for profile in self.threads:
            with contextlib.suppress(TypeError):  # a thread that recorded nothing
                stats.add(profile)
        return stats


def short_name(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    for marker in ("/rebase_cli/", "/site-packages/", "/lib/python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = "stdlib/" + filename.split("/", 1)[-1]
            break
    return f"{filename}:{line}({function})" if line else function


def package_of(key: tuple[str, int, str]) -> str:
    """Who owns a function: `rebase_cli`, a third-party distribution, `stdlib` or C builtins."""
    filename = key[0]
    if "/rebase_cli/" in filename:
        return "rebase_cli"
    if "/site-packages/" in filename:
        return filename.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if filename == "~":
        return "C builtins (sqlite3, sockets, ...)"
    return "stdlib (asyncio, json, ...)"


# Frames that only wrap everything else (the event loop, the script itself): left out of the
# cumulative ranking so that it starts at our code.
WRAPPERS = ("stdlib/asyncio/", "_contextvars", "bench_orchestrator.py", "concurrent/futures")


def print_top(stats: pstats.Stats, sort: str, top: int, nodes: int) -> None:
    entries = stats.stats  # type: ignore[attr-defined]
    index = 3 if sort == "cumulative" else 2
    rows = [
        (key, value)
        for key, value in entries.items()
        if sort != "cumulative" or not any(w in short_name(key) for w in WRAPPERS)
    ]
    ranked = sorted(rows, key=lambda item: item[1][index], reverse=True)
    what = "cumulative" if sort == "cumulative" else "own"
    print(f"  top {top} by {what} CPU time (µs/node: that time x 1e6 / {nodes:,} nodes)")
    print(f"  {'cum s':>8} {'own s':>8} {'µs/node':>8} {'calls':>9}  function")
    for key, (_, calls, own, cumulative, _) in ranked[:top]:
        per_node = (cumulative if sort == "cumulative" else own) * 1e6 / max(nodes, 1)
        print(f"  {cumulative:8.2f} {own:8.2f} {per_node:8.0f} {calls:9d}  {short_name(key)}")


def print_packages(stats: pstats.Stats) -> None:
    """Own CPU time summed by the package that owns each function."""
    totals: dict[str, float] = {}
    for key, (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        totals[package_of(key)] = totals.get(package_of(key), 0.0) + own
    grand = sum(totals.values()) or 1.0
    print("  own CPU time by package (share of the profiled total)")
    for package, seconds in sorted(totals.items(), key=lambda item: -item[1])[:10]:
        print(f"  {seconds / grand:6.1%}  {package}")


# The goal figures of the orchestrator-efficiency issue that this script measures.
GOAL_CPU_MS_PER_NODE = 0.25
GOAL_NODES_PER_SECOND = 3000
REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).resolve().parent / "inprocess_search.py"


def say(*parts: object) -> None:
    """Human-readable output: stdout, or stderr under --json (stdout is then the JSON)."""
    print(*parts, file=sys.stderr if JSON_MODE else sys.stdout, flush=True)


JSON_MODE = False


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[tuple[Path, str]]:
    """A detached git worktree of `rev` in a temporary directory, and its short commit id;
    removed afterwards."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="rebase-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), commit],
            check=True,
        )
        try:
            yield tree, commit
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False
            )


def measured_search(tree: Path, db: Path, url: str, args: argparse.Namespace) -> dict:
    """`inprocess_search.py` as a child with `tree` first on its path: that tree's search,
    measured in that child (see its docstring), plus the simulator's CPU meanwhile."""
    sim_reset(url)
    env = {**os.environ, **data_env(), "PYTHONPATH": str(tree)}
    env.pop("REBASE_DB", None)
    command = [sys.executable, str(CHILD), str(db), url]
    command += [str(args.problems), str(args.budget), str(args.concurrency)]
    sim_before = cpu_seconds(SIM_PID[0])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the search in {tree} failed:\n{done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(figures["tree"]).resolve() != tree.resolve():
        raise SystemExit(f"the child imported rebase_cli from {figures['tree']}, not {tree}")
    figures["sim_cpu_seconds"] = cpu_seconds(SIM_PID[0]) - sim_before
    return figures


SIM_PID: list[int] = [0]


def median_run(runs: list[dict]) -> dict:
    """The run of median CPU time (the lower middle one of an even count), with every run's
    CPU ms/node listed."""
    ranked = sorted(runs, key=lambda run: run["cpu_seconds"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["cpu_ms_per_node_runs"] = [run["cpu_seconds"] * 1e3 / run["nodes"] for run in runs]
    return chosen


def describe_search(label: str, figures: dict) -> None:
    nodes = figures["nodes"]
    say(f"   {label}: {nodes:,} nodes, {figures['requests']:,} model requests")
    say(
        f"     wall          {figures['wall_seconds']:8.2f} s   -> "
        f"{nodes / figures['wall_seconds']:8.0f} nodes/s"
    )
    say(
        f"     our CPU       {figures['cpu_seconds']:8.2f} s   -> "
        f"{figures['cpu_seconds'] * 1e3 / nodes:8.3f} ms/node"
    )
    say(
        f"     simulator CPU {figures['sim_cpu_seconds']:8.2f} s   -> "
        f"{figures['sim_cpu_seconds'] * 1e3 / nodes:8.3f} ms/node"
    )
    if len(figures["cpu_ms_per_node_runs"]) > 1:
        runs = ", ".join(f"{ms:.3f}" for ms in figures["cpu_ms_per_node_runs"])
        say(f"     (the run of median CPU; our CPU ms/node of each run: {runs})")


def goal_line(what: str, value: str, met: bool) -> str:
    return f"   {'PASS' if met else 'MISS'}  {what}: {value}"


def main() -> None:
    global JSON_MODE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--flavour", default="vllm", help="the server the simulator plays (default vllm)"
    )
    parser.add_argument(
        "--baseline", default="HEAD~1", help="commit to compare with (default HEAD~1); none: skip"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="in-process searches per tree (median CPU shown)"
    )
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="figures as JSON on stdout")
    args = parser.parse_args()
    JSON_MODE = args.json
    result: dict = {"problems": args.problems, "budget": args.budget, "flavour": args.flavour}
    result["concurrency"] = args.concurrency

    title = (
        f"orchestrator throughput: {args.problems} GSM8K problems, budget {args.budget}, "
        f"concurrency {args.concurrency}, simulator ({args.flavour}) latency off"
    )
    with contextlib.redirect_stdout(sys.stderr if JSON_MODE else sys.stdout):
        header(title)
    with (
        start_simulator("--flavour", args.flavour) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        SIM_PID[0] = sim.process.pid
        say(f"simulator pid {sim.process.pid} at {sim.url}")

        # 1. the CLI as a child process
        sim_reset(sim.url)
        sim_cpu = cpu_seconds(sim.process.pid)
        cli = run_cli(
            Path(tmp) / "cli.db",
            search_args(
                sim.url,
                sim.url,
                problems=args.problems,
                budget=args.budget,
                extra=["--concurrency", str(args.concurrency)],
            ),
        )
        summary = cli.summary()
        sim_cpu_cli = cpu_seconds(sim.process.pid) - sim_cpu
        requests = model_requests(sim_stats(sim.url))
        nodes = summary["nodes"]
        search_wall = summary["wall_seconds"]
        say(f"\n1. `rebase search` child process: {nodes:,} nodes, {requests:,} model requests")
        say(f"   search wall     {search_wall:8.2f} s   -> {nodes / search_wall:8.0f} nodes/s")
        say(f"   process wall    {cli.wall:8.2f} s   (start-up and imports included)")
        say(
            f"   our CPU         {cli.cpu:8.2f} s   -> {cli.cpu * 1e3 / nodes:8.3f} ms/node "
            f"(user {cli.user:.2f} s, sys {cli.system:.2f} s, start-up included)"
        )
        say(
            f"   simulator CPU   {sim_cpu_cli:8.2f} s   -> {sim_cpu_cli * 1e3 / nodes:8.3f} ms/node"
            f"   (baseline; ours / simulator's = {cli.cpu / max(sim_cpu_cli, 1e-9):.1f}x)"
        )
        result["cli"] = {
            "nodes": nodes,
            "requests": requests,
            "search_wall_seconds": search_wall,
            "process_wall_seconds": cli.wall,
            "cpu_seconds": cli.cpu,
            "sim_cpu_seconds": sim_cpu_cli,
        }

        # 2. in-process searches: the baseline commit, then this checkout
        say("\n2. in-process search (no progress display), this checkout against a baseline")
        before = None
        if args.baseline.lower() != "none":
            with worktree(args.baseline) as (tree, commit):
                befores, afters = [], []
                for index in range(args.repeat):  # alternated, so drifting load hits both
                    db = Path(tmp) / f"before{index}.db"
                    befores.append(measured_search(tree, db, sim.url, args))
                    db = Path(tmp) / f"after{index}.db"
                    afters.append(measured_search(REPO, db, sim.url, args))
            before = median_run(befores)
            before["commit"] = commit
            describe_search(f"baseline {commit} ({args.baseline})", before)
        else:
            afters = [
                measured_search(REPO, Path(tmp) / f"after{index}.db", sim.url, args)
                for index in range(args.repeat)
            ]
        after = median_run(afters)
        describe_search("this checkout", after)
        result["after"] = after
        result["before"] = before
        if after["nodes"] != nodes or (before and before["nodes"] != nodes):
            say(f"   NOTE: the trees differ from the CLI run's ({nodes:,} nodes)")
        cpu_ms = after["cpu_seconds"] * 1e3 / after["nodes"]
        rate = after["nodes"] / after["wall_seconds"]
        goals = {
            "cpu_ms_per_node": cpu_ms,
            "cpu_goal_met": cpu_ms <= GOAL_CPU_MS_PER_NODE,
            "nodes_per_second": rate,
            "rate_goal_met": rate >= GOAL_NODES_PER_SECOND,
        }
        if before is not None:
            before_ms = before["cpu_seconds"] * 1e3 / before["nodes"]
            goals["cpu_ms_per_node_before"] = before_ms
            goals["cpu_ratio"] = cpu_ms / before_ms
            say(
                f"\n   our CPU per node: {before_ms:.3f} ms before ({before['commit']}), "
                f"{cpu_ms:.3f} ms after: after / before = {cpu_ms / before_ms:.2f} "
                f"({before_ms / cpu_ms:.1f}x less)"
            )
        result["goals"] = goals
        say("\n   goals of the orchestrator-efficiency issue measured here:")
        say(
            goal_line(
                f"our CPU per tree node <= {GOAL_CPU_MS_PER_NODE} ms",
                f"{cpu_ms:.3f} ms",
                goals["cpu_goal_met"],
            )
        )
        say(
            goal_line(
                f">= {GOAL_NODES_PER_SECOND:,} nodes/s, latency off, simulator on this machine",
                f"{rate:,.0f} nodes/s (wall of the in-process search; shared cores)",
                goals["rate_goal_met"],
            )
        )
        say("   (wall <= 1.05 x ideal with a modelled GPU: bench_server_busy.py)")

        # 3. profiled
        if not args.no_profile:
            sim_reset(sim.url)
            with ThreadedProfile() as profile:
                wall0 = time.perf_counter()
                search_in_process(Path(tmp) / "profiled.db", sim.url, args)
                wall = time.perf_counter() - wall0
            stats = profile.stats()
            total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
            with contextlib.redirect_stdout(sys.stderr if JSON_MODE else sys.stdout):
                print(
                    f"\n3. profiled in-process search: {wall:.1f} s wall, {total:.1f} s CPU "
                    f"under cProfile (thread CPU clocks; {len(profile.threads)} worker threads "
                    "merged)"
                )
                print_top(stats, "cumulative", args.top, nodes)
                print()
                print_top(stats, "tottime", args.top, nodes)
                print()
                print_packages(stats)
    if JSON_MODE:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
