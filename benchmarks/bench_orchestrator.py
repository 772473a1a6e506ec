"""Orchestrator throughput: tree nodes per second `rebase search` sustains against the
simulator with latency modelling off, and the CPU time per node spent in our own process.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_orchestrator.py
        [--problems 100] [--budget 16] [--concurrency 32] [--no-profile] [--top 15]

The simulator runs as its own process (`python -m rebase_cli.sim`, answers at once), so its CPU
is not ours. The same search (same seed, so the same tree: the node counts must agree) runs
three times on fresh databases:

  1. `rebase search ... --json` as a child process, as a user runs it: wall time of the search
     (from its summary), nodes/s, and the child's CPU time from the kernel (wait4), which also
     includes interpreter start-up and imports;
  2. in this process through `runner.service.run_search` with no progress display: the CPU
     time of the search alone (`time.process_time`, all threads), i.e. our cost per node;
  3. the same under cProfile (every thread, merged), printing the top functions by cumulative
     and by own time so the hot spots are visible. Profiling slows the run down; its times are
     only for ranking.

Baseline measured in the same run: the simulator's own CPU time per node (psutil, before and
after each search), which bounds what any client could get from this server on these cores.
On a machine shared with other work, compare ratios rather than absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import tempfile
import threading
import time
from pathlib import Path

from _common import (
    cpu_seconds,
    header,
    model_requests,
    run_cli,
    search_args,
    sim_reset,
    sim_stats,
    start_simulator,
)

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
    prepared, outcome = asyncio.run(run_search(db, request, endpoints, lambda _: NoEvents()))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    header(
        f"orchestrator throughput: {args.problems} GSM8K problems, budget {args.budget}, "
        f"concurrency {args.concurrency}, simulator latency off"
    )
    with start_simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        print(f"simulator pid {sim.process.pid} at {sim.url}")

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
        print(f"\n1. `rebase search` child process: {nodes:,} nodes, {requests:,} model requests")
        print(f"   search wall     {search_wall:8.2f} s   -> {nodes / search_wall:8.0f} nodes/s")
        print(f"   process wall    {cli.wall:8.2f} s   (start-up and imports included)")
        print(
            f"   our CPU         {cli.cpu:8.2f} s   -> {cli.cpu * 1e3 / nodes:8.3f} ms/node "
            f"(user {cli.user:.2f} s, sys {cli.system:.2f} s, start-up included)"
        )
        print(
            f"   simulator CPU   {sim_cpu_cli:8.2f} s   -> {sim_cpu_cli * 1e3 / nodes:8.3f} ms/node"
            f"   (baseline; ours / simulator's = {cli.cpu / max(sim_cpu_cli, 1e-9):.1f}x)"
        )

        # 2. in-process, no progress display
        sim_reset(sim.url)
        sim_cpu = cpu_seconds(sim.process.pid)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        totals = search_in_process(Path(tmp) / "inproc.db", sim.url, args)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        sim_cpu_in = cpu_seconds(sim.process.pid) - sim_cpu
        same = "same tree" if totals["nodes"] == nodes else f"DIFFERENT: {totals['nodes']} nodes"
        print(f"\n2. in-process search (no progress display; {same})")
        print(f"   wall            {wall:8.2f} s   -> {nodes / wall:8.0f} nodes/s")
        print(
            f"   our CPU         {cpu:8.2f} s   -> {cpu * 1e3 / nodes:8.3f} ms/node  "
            f"({cpu / wall:.0%} of one core while searching)"
        )
        print(
            f"   simulator CPU   {sim_cpu_in:8.2f} s   -> {sim_cpu_in * 1e3 / nodes:8.3f} ms/node"
            f"   (ours / simulator's = {cpu / max(sim_cpu_in, 1e-9):.1f}x)"
        )
        print(
            f"   per node: {totals['policy_requests'] / nodes:.2f} policy and "
            f"{totals['reward_requests'] / nodes:.2f} reward requests, "
            f"{(totals['policy_prompt_tokens'] + totals['policy_completion_tokens']) / nodes:.0f}"
            f" policy tokens"
        )

        # 3. profiled
        if not args.no_profile:
            sim_reset(sim.url)
            with ThreadedProfile() as profile:
                wall0 = time.perf_counter()
                search_in_process(Path(tmp) / "profiled.db", sim.url, args)
                wall = time.perf_counter() - wall0
            stats = profile.stats()
            total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
            print(
                f"\n3. profiled in-process search: {wall:.1f} s wall, {total:.1f} s CPU under "
                f"cProfile (thread CPU clocks; {len(profile.threads)} worker threads merged)"
            )
            print_top(stats, "cumulative", args.top, nodes)
            print()
            print_top(stats, "tottime", args.top, nodes)
            print()
            print_packages(stats)


if __name__ == "__main__":
    main()
