"""The default profile against `--profile reference` (the authors' rebase.py), on the simulator.

Runs `rebase search` twice over the same GSM8K problems with the authors' own config file
(examples/authors-rebase.yaml: width 16, softmax temperature 0.2, max_step_tokens 256,
max_tokens 1024), once as rebase does by default and once with `--profile reference`, then
prints for each the finished answers per problem, the accuracy under every answer-selection
rule, the paper's compute (policy generated tokens) and ours (policy prompt + completion
tokens + PRM tokens). The simulator's accuracy is synthetic: this shows how far the two
profiles' trees differ on the same PRM signal, not how a real model performs.

    python benchmarks/bench_profiles.py [--problems 200] [--seed 0] [--max-tokens N] [--json]

`--max-tokens N` overrides the YAML's 1024 in both runs: the simulator's steps are short
(~20 tokens), so a small N shows what the path-token rule does to longer real steps.
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

ROOT = Path(__file__).resolve().parents[1]
AUTHORS_YAML = ROOT / "examples" / "authors-rebase.yaml"
RULES = ("majority", "weighted_last", "weighted_min", "weighted_mean", "best_of_n_last",
         "best_of_n_min", "pass_at_n")  # fmt: skip
PROFILES = {"default": (), "reference": ("--profile", "reference")}


def rebase(db: Path, *args: str) -> str:
    command = [sys.executable, "-m", "rebase_cli", "--db", str(db), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def measure(db: Path, flags: tuple[str, ...], problems: int, seed: int) -> dict:
    started = time.monotonic()
    summary = json.loads(
        rebase(db, "search", "--dataset", "gsm8k", "--config", str(AUTHORS_YAML), *flags,
               "--limit", str(problems), "--seed", str(seed), "--policy", "sim",
               "--reward", "sim", "--json")
    )  # fmt: skip
    if summary["interrupted"]:
        raise SystemExit(f"{summary['run']} was interrupted")
    wall = time.monotonic() - started
    report = json.loads(rebase(db, "report", summary["run"], "--format", "json"))["runs"][0]
    budget = report["run"]["budget"]
    full = next(row for row in report["accuracy"] if row["budget"] == budget)
    compute = report["compute"]
    started_problems = compute["problems_started"]
    ours = (
        compute["policy_prompt_tokens"]
        + compute["policy_completion_tokens"]
        + compute["reward_tokens"]
    )
    return {
        "run": summary["run"],
        "problems": started_problems,
        "failed": summary["failed"],
        "answers_per_problem": compute["answers_per_problem"],
        "accuracy": {rule: full["accuracy"][rule] for rule in RULES},
        "paper_compute_per_problem": compute["policy_completion_tokens"] / started_problems,
        "our_tokens_per_problem": ours / started_problems,
        "nodes": summary["nodes"],
        "wall_seconds": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=None, help="override max_tokens")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    extra = () if args.max_tokens is None else ("--max-tokens", str(args.max_tokens))
    os.environ.setdefault("REBASE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        results = {
            name: measure(db, (*flags, *extra), args.problems, args.seed)
            for name, flags in PROFILES.items()
        }
    if args.json:
        figures = {"problems": args.problems, "seed": args.seed, "max_tokens": args.max_tokens}
        print(json.dumps({**figures, **results}, indent=2))
        return
    names = list(results)
    limit = f", max_tokens {args.max_tokens}" if args.max_tokens else ""
    print(f"GSM8K, {args.problems} problems, the authors' config (width 16{limit}), simulator")
    print(f"{'':<28}" + "".join(f"{name:>12}" for name in names))
    rows = [("answers per problem", "answers_per_problem", "{:>12.2f}")]
    rows += [(f"accuracy {rule}", rule, "{:>12.3f}") for rule in RULES]
    rows += [
        ("paper compute / problem", "paper_compute_per_problem", "{:>12,.0f}"),
        ("our tokens / problem", "our_tokens_per_problem", "{:>12,.0f}"),
        ("nodes", "nodes", "{:>12,}"),
        ("failed problems", "failed", "{:>12}"),
        ("wall seconds", "wall_seconds", "{:>12}"),
    ]
    for label, key, fmt in rows:
        values = [r["accuracy"][key] if key in RULES else r[key] for r in results.values()]
        print(f"{label:<28}" + "".join(fmt.format(v) for v in values))
    print("paper compute = policy generated (completion) tokens; ours adds prompt and PRM tokens")


if __name__ == "__main__":
    main()
