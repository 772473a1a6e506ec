"""REBASE against the `sample` baseline at equal budget, on the simulator's default settings.

Runs `rebase search` twice (REBASE, then N independent samples) over the same GSM8K problems,
then prints each method's accuracy under every answer-selection rule, its tokens and FLOPs.
The simulator's accuracy is synthetic: this checks that the search machinery turns a PRM
signal into accuracy, not how any real model performs.

    python benchmarks/bench_rebase_vs_sample.py [--problems 200] [--budget 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RULES = ("majority", "weighted_last", "weighted_min", "weighted_mean", "best_of_n_last",
         "best_of_n_min", "pass_at_n")  # fmt: skip


def rebase(db: Path, *args: str) -> str:
    command = [sys.executable, "-m", "rebase_cli", "--db", str(db), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault(
        "REBASE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/data")
    )
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        for method in ("rebase", "sample"):
            started = time.monotonic()
            summary = json.loads(
                rebase(db, "search", "--dataset", "gsm8k", "--budget", str(args.budget),
                       "--limit", str(args.problems), "--method", method, "--seed",
                       str(args.seed), "--policy", "sim", "--reward", "sim", "--json")
            )  # fmt: skip
            wall = time.monotonic() - started
            report = json.loads(rebase(db, "report", summary["run"], "--format", "json"))
            full = next(
                row for row in report["runs"][0]["accuracy"] if row["budget"] == args.budget
            )
            results[method] = (summary, full, wall)
    print(f"GSM8K, {args.problems} problems, budget {args.budget}, simulator defaults (synthetic)")
    print(f"{'rule':<16}" + "".join(f"{m:>10}" for m in results))
    for rule in RULES:
        print(f"{rule:<16}" + "".join(f"{r[1]['accuracy'][rule]:>10.3f}" for r in results.values()))
    for method, (summary, full, wall) in results.items():
        tokens = summary["policy_prompt_tokens"] + summary["policy_completion_tokens"]
        print(
            f"{method:>7}: {summary['nodes']:,} nodes, {tokens:,} policy tokens, "
            f"{full['flops_per_problem']:.3e} FLOPs/problem, {wall:.1f}s wall"
        )
    ratio = results["rebase"][1]["accuracy"]["weighted_last"] / max(
        results["sample"][1]["accuracy"]["weighted_last"], 1e-9
    )
    print(f"weighted vote (last) accuracy, rebase / sample: {ratio:.3f}")


if __name__ == "__main__":
    main()
