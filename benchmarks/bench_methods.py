"""Every search method at equal budget, on the simulator: accuracy, policy tokens, requests, wall.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_methods.py
        [--problems 200] [--budgets 4,16,64] [--beam-expansion 4] [--concurrency 32]
        [--base-ms 0] [--output-token-ms 0] [--prompt-token-ms 0] [--json]

Runs `rebase search` (a child process, as a user runs it) for rebase, sample step by step,
sample whole (each path in one request, every step scored afterwards), beam, DVTS and particle
filtering at each budget over the same GSM8K problems with the same seed, then `rebase report`
for each run. Prints per method and budget: accuracy under weighted majority vote and best-of-N
(both by the last step's score), policy tokens, model requests (policy + reward) and the
search's wall time, plus the ratios of whole-solution to step-by-step sampling measured in the
same run. The simulator is one child process serving the setwise /v1/score readout (as SGLang
does with --disable-radix-cache --chunked-prefill-size -1), so whole-solution sampling scores a
problem in one request; latency modelling is off unless the --*-ms flags set a GPU cost model.

The simulator's accuracy is synthetic (every figure printed says so): this compares what the
methods do with one PRM signal at one budget, not how any real model performs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import header, run_cli, search_args, start_simulator

METHODS = {
    "rebase": ["--method", "rebase"],
    "sample (steps)": ["--method", "sample", "--sample-mode", "steps"],
    "sample (whole)": ["--method", "sample", "--sample-mode", "whole"],
    "beam": ["--method", "beam"],
    "dvts": ["--method", "dvts"],
    "particle": ["--method", "particle"],
}
SYNTHETIC = "SIMULATED — synthetic accuracy"


def measure(db: Path, url: str, method: str, budget: int, args: argparse.Namespace) -> dict:
    """One search and its report: the figures of one table row."""
    extra = [
        *METHODS[method],
        "--beam-expansion",
        str(args.beam_expansion),
        "--concurrency",
        str(args.concurrency),
    ]
    search = run_cli(db, search_args(url, url, problems=args.problems, budget=budget, extra=extra))
    summary = search.summary()
    report = run_cli(db, ["report", summary["run"], "--format", "json"])
    if report.returncode != 0:
        raise SystemExit(f"rebase report failed:\n{report.stderr[-2000:]}")
    run = json.loads(report.stdout)["runs"][0]
    full = next(row for row in run["accuracy"] if row["budget"] == budget)
    return {
        "method": method,
        "budget": budget,
        "weighted_vote": full["accuracy"]["weighted_last"],
        "best_of_n": full["accuracy"]["best_of_n_last"],
        "majority": full["accuracy"]["majority"],
        "policy_tokens": summary["policy_prompt_tokens"] + summary["policy_completion_tokens"],
        "policy_requests": summary["policy_requests"],
        "reward_requests": summary["reward_requests"],
        "requests": summary["policy_requests"] + summary["reward_requests"],
        "nodes": summary["nodes"],
        "wall_seconds": summary["wall_seconds"],
        "failed": summary["failed"],
    }


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"GSM8K, first {args.problems} problems, seed 0, beam/DVTS M = {args.beam_expansion}; "
          f"{SYNTHETIC}")  # fmt: skip
    print(
        f"{'budget':>6} {'method':<15} {'w-vote':>7} {'best-N':>7} {'policy tok':>11} "
        f"{'requests':>9} {'(pol+rew)':>13} {'wall s':>7}"
    )
    for row in rows:
        print(
            f"{row['budget']:>6} {row['method']:<15} {row['weighted_vote']:>7.3f} "
            f"{row['best_of_n']:>7.3f} {row['policy_tokens']:>11,} {row['requests']:>9,} "
            f"{row['policy_requests']:>6,}+{row['reward_requests']:<6,} "
            f"{row['wall_seconds']:>7.1f}"
        )
    for budget in args.budget_list:
        steps = next(r for r in rows if r["budget"] == budget and r["method"] == "sample (steps)")
        whole = next(r for r in rows if r["budget"] == budget and r["method"] == "sample (whole)")
        print(
            f"budget {budget}: whole / step-by-step sampling: requests "
            f"{whole['requests'] / max(steps['requests'], 1):.3f}, policy tokens "
            f"{whole['policy_tokens'] / max(steps['policy_tokens'], 1):.3f}, wall "
            f"{whole['wall_seconds'] / max(steps['wall_seconds'], 1e-9):.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--budgets", default="4,16,64")
    parser.add_argument("--beam-expansion", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--base-ms", type=float, default=0.0)
    parser.add_argument("--prompt-token-ms", type=float, default=0.0)
    parser.add_argument("--output-token-ms", type=float, default=0.0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    args.budget_list = [int(b) for b in args.budgets.split(",")]
    if not args.json:
        header("search methods at equal budget (bench_methods.py)")
    latency = [
        "--base-ms", str(args.base_ms),
        "--prompt-token-ms", str(args.prompt_token_ms),
        "--output-token-ms", str(args.output_token_ms),
    ]  # fmt: skip
    rows = []
    with (
        tempfile.TemporaryDirectory() as folder,
        start_simulator("--score-extraction", *latency) as sim,
    ):
        db = Path(folder) / "bench.db"
        total = len(args.budget_list) * len(METHODS)
        for budget in args.budget_list:
            for method in METHODS:
                rows.append(measure(db, sim.url, method, budget, args))
                print(f"[{len(rows)}/{total}] budget {budget} {method}: "
                      f"{rows[-1]['wall_seconds']:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
    if args.json:
        print(json.dumps({"simulated": True, "label": SYNTHETIC, "rows": rows}, indent=2))
    else:
        print_table(rows, args)


if __name__ == "__main__":
    main()
