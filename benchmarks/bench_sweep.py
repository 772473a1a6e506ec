"""Sweep order: the runs of a budget sweep one after another (what `rebase search --budget
4,8,16` does) against the same runs started side by side, on one simulated GPU.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_sweep.py
        [--budgets 4,8,16] [--problems 24] [--concurrency 8] [--max-running 64]

The simulator models a GPU: per-request, prefill and decode time and at most `--max-running`
sequences served at once (more wait in FIFO order). Both ways run the same runs with the same
seeds on fresh databases:

  1. in order: one `rebase search --budget 4,8,16 --group sweep` child;
  2. side by side: one `rebase search --budget N` child per budget, all started together,
     each with the same `--concurrency`.

Printed: wall time of each way, their ratio (side by side / in order), and the simulator's busy
fraction. With the GPU saturated by one run's `--concurrency` problems, side by side only splits
the same capacity and the ratio stays near 1; it drops below 1 only where one run leaves the
GPU idle (small budgets, low concurrency).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    CliChild,
    machine,
    sim_reset,
    sim_stats,
    start_simulator,
)


def _args(url: str, budgets: str, problems: int, concurrency: int, extra: list[str]) -> list[str]:
    return [
        "search", "--dataset", "gsm8k", "--budget", budgets, "--limit", str(problems),
        "--seed", "0", "--concurrency", str(concurrency), "--policy", url, "--reward", url,
        "--json", *extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="4,8,16")
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-running", type=int, default=64)
    options = parser.parse_args()
    budgets = options.budgets.split(",")
    latency = ["--base-ms", "5", "--prompt-token-ms", "0.01", "--output-token-ms", "0.05",
               "--max-running", str(options.max_running)]  # fmt: skip
    print(machine())
    with start_simulator(*latency) as sim, tempfile.TemporaryDirectory() as tmp:
        sim_reset(sim.url)
        started = time.monotonic()
        child = CliChild(
            Path(tmp) / "order.db",
            _args(sim.url, options.budgets, options.problems, options.concurrency,
                  ["--group", "sweep"]),
        )  # fmt: skip
        result = child.wait()
        in_order = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(result.stderr[-2000:])
        busy_order = sim_stats(sim.url)

        sim_reset(sim.url)
        started = time.monotonic()
        children = [
            CliChild(
                Path(tmp) / f"side-{budget}.db",
                _args(sim.url, budget, options.problems, options.concurrency, []),
            )
            for budget in budgets
        ]
        results = [c.wait() for c in children]
        side_by_side = time.monotonic() - started
        if any(r.returncode != 0 for r in results):
            raise SystemExit("\n".join(r.stderr[-1000:] for r in results))
        busy_side = sim_stats(sim.url)
    print(
        f"budgets {options.budgets}, {options.problems} problems, concurrency "
        f"{options.concurrency}, GPU model: {options.max_running} sequences at once"
    )
    print(f"in order     : {in_order:7.2f} s   sim stats {_busy(busy_order)}")
    print(f"side by side : {side_by_side:7.2f} s   sim stats {_busy(busy_side)}")
    print(f"ratio side by side / in order: {side_by_side / in_order:.2f}")


def _busy(stats: dict) -> str:
    keys = ("busy_seconds", "queue_seconds")
    return ", ".join(f"{k} {stats[k]:.1f}" for k in keys if k in stats) or str(stats)[:120]


if __name__ == "__main__":
    main()
