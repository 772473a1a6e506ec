"""Peak memory (RSS) of `rebase search` on GSM8K at budget 64 against the simulator.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_memory.py
        [--budget 64] [--prefixes 50,100,200] [--full] [--concurrency 32]

The full test set (1,319 problems, ~380k nodes at budget 64) takes far longer than ten minutes
on a small machine, so by default the search runs on growing prefixes of the dataset, each on
a fresh database, and the full run's peak is extrapolated with a straight line through the
prefixes' peaks (a flat line means memory is bounded by the problems in flight, not by the run's
size). `--full` adds the whole dataset as a last prefix.

The simulator (latency off) runs as its own process, so its memory is not counted. Peak RSS is
the kernel's high-water mark of the `rebase` child (`ru_maxrss` from wait4), which no sampling
can miss; the child's RSS is also sampled every 0.5 s to show whether it keeps growing while
the search runs. Baseline in the same run: the peak RSS of the same command on a single problem
(the interpreter, the imports, one tree).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil
from _common import CliChild, CliResult, header, search_args, start_simulator

SAMPLE_S = 0.5


def measure(db: Path, url: str, problems: int, args: argparse.Namespace):
    """Run the search; returns (CliResult, RSS samples in MiB over time)."""
    child = CliChild(
        db,
        search_args(
            url,
            url,
            problems=problems,
            budget=args.budget,
            extra=["--concurrency", str(args.concurrency)],
        ),
    )
    process = psutil.Process(child.pid)
    samples: list[tuple[float, float]] = []
    while child.running():
        try:
            samples.append((time.monotonic() - child.started, process.memory_info().rss / 2**20))
        except psutil.Error:  # exited between the poll and the sample
            break
        time.sleep(SAMPLE_S)
    return child.wait(), samples


def describe(samples: list[tuple[float, float]]) -> str:
    """RSS at each quarter of the run's duration."""
    if not samples:
        return "no samples"
    end = samples[-1][0]
    points = []
    for quarter in (0.25, 0.5, 0.75, 1.0):
        t, rss = min(samples, key=lambda s: abs(s[0] - quarter * end))
        points.append(f"{rss:.0f} MiB @ {t:.0f} s")
    return ", ".join(points)


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return slope, my - slope * mx


def report(label: str, result: CliResult, samples: list[tuple[float, float]]) -> dict:
    summary = result.summary()
    print(
        f"  {label:>12}: peak RSS {result.max_rss_mib:6.0f} MiB   {summary['nodes']:>8,} nodes "
        f"in {summary['wall_seconds']:6.1f} s   RSS over time: {describe(samples)}"
    )
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--prefixes", default="50,100,200")
    parser.add_argument("--full", action="store_true", help="also run all 1,319 problems")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    prefixes = [int(p) for p in args.prefixes.split(",")] + ([1319] if args.full else [])

    header(f"peak memory: GSM8K at budget {args.budget}, concurrency {args.concurrency}")
    with start_simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        result, samples = measure(Path(tmp) / "one.db", sim.url, 1, args)
        report("1 problem", result, samples)
        baseline = result.max_rss_mib
        peaks: list[tuple[int, float]] = []
        for problems in prefixes:
            result, samples = measure(Path(tmp) / f"p{problems}.db", sim.url, problems, args)
            report(f"{problems} problems", result, samples)
            peaks.append((problems, result.max_rss_mib))
    slope, intercept = fit([p for p, _ in peaks], [m for _, m in peaks])
    largest = max(m for _, m in peaks)
    if args.full:
        full, how = peaks[-1][1], "measured"
    else:
        # A flat or falling line (memory bounded by the problems in flight) cannot promise less
        # than was already seen, so the estimate is never below the largest measured peak.
        full, how = max(largest, intercept + slope * 1319), "extrapolated"
    print(
        f"\npeak RSS changes by {slope * 100:+.1f} MiB per 100 problems over the prefixes; "
        f"1,319 problems: {how} {full:.0f} MiB ({full / baseline:.2f}x the 1-problem baseline "
        f"of {baseline:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
