"""Time `rebase report` on a GSM8K-sized run: 1,319 problems × budget 64.

The run is written straight into a fresh database with bulk SQL (no search, no servers): every
problem gets a REBASE-shaped tree of width 64 in which paths start finishing at depth 3, about
a quarter of the new nodes finish at each depth after that, and everything still open finishes
at depth 10. Finished answers are the reference (with a per-problem probability) or one of a
few popular wrong numbers or one of a long tail, so voting has real groups to count and the
grader has tens of thousands of distinct (answer, reference) pairs.

Then `rebase report RUN --format json` runs as a subprocess twice: cold (every distinct answer
graded and cached) and warm (verdicts from the cache); the warm one is the figure the issue
bounds (< 5 s). Finally the in-process stages of a warm report are timed one by one.

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_report.py [--problems N] [--budget B]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from rebase_cli.datasets import load_dataset
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run, utcnow
from rebase_cli.store.runs import create_run, resolve_run

MAX_DEPTH = 10


def build_run(
    db_path: Path,
    problems: int,
    budget: int,
    seed: int = 0,
    name: str = "bench",
    simulated: bool = False,
) -> tuple[int, int, int]:
    """Write the run; returns (run id, nodes, allocation rows)."""
    dataset = load_dataset("gsm8k")
    db = Database.open(db_path)
    run = create_run(
        db,
        Run(
            name=name,
            method="rebase",
            dataset="gsm8k",
            dataset_sha256=dataset.sha256,
            budget=budget,
            config_json=json.dumps({"method": "rebase", "budget": budget}),
            fingerprint="bench",
            policy_model="EleutherAI/llemma_7b",
            reward_model="peiyi9979/math-shepherd-mistral-7b-prm",
            status="done",
            simulated=simulated,
            seed=seed,
            wall_seconds=3600.0,
        ),
    )
    db.close()
    rng = random.Random(seed)
    now = utcnow().isoformat(sep=" ")
    problem_rows, node_rows, allocation_rows = [], [], []
    # Explicit ids (so children can name their parents) continue after existing rows.
    with closing(sqlite3.connect(db_path)) as connection:
        first_problem = connection.execute("SELECT coalesce(max(id), 0) FROM problem").fetchone()[0]
        node_id = connection.execute("SELECT coalesce(max(id), 0) FROM node").fetchone()[0]
    for index, problem in enumerate(dataset.problems[:problems]):
        problem_id = first_problem + index + 1
        skill = rng.random()
        # Wrong answers: a few popular mistakes plus a long tail, as sampled solutions have.
        truth = int(float(problem.reference_answer.replace(",", "")))
        popular = [str(truth + d) for d in (1, -2, 10)]
        tail = [str(truth + d) for d in range(-40, 41) if d]
        node_id += 1
        root = node_id
        node_rows.append((root, problem_id, None, 0, 0, "", 1.0, 0, 0, None, None))
        frontier, width, depth, prompt_tokens, completion_tokens = [(root, 1.0)], budget, 0, 0, 0
        requests = 0
        while frontier and width > 0:
            # REBASE-like allocation: width split by score over the open nodes (sequential ceil).
            top = max(score for _, score in frontier)
            weights = [math.exp((score - top) / 0.2) for _, score in frontier]
            left, remaining_weight, counts = width, sum(weights), []
            for weight in weights:
                count = min(left, math.ceil(left * weight / remaining_weight - 1e-9))
                counts.append(count)
                left -= count
                remaining_weight -= weight
            requests += sum(1 for count in counts if count)
            depth += 1
            new_frontier, ordinal = [], 0
            for (parent, _), weight, count in zip(frontier, weights, counts, strict=True):
                allocation_rows.append((problem_id, depth - 1, parent, weight, count))
                for _ in range(count):
                    node_id += 1
                    score = min(1.0, max(0.0, rng.gauss(0.4 + 0.5 * skill, 0.2)))
                    finish = depth >= MAX_DEPTH or (depth >= 3 and rng.random() < 0.25)
                    answer = None
                    if finish:
                        answer = (
                            problem.reference_answer
                            if rng.random() < skill
                            else rng.choice(popular if rng.random() < 0.5 else tail)
                        )
                    text = f"Step {depth}: some reasoning about quantity {ordinal} = {ordinal * 7}"
                    node_rows.append(
                        (
                            node_id,
                            problem_id,
                            parent,
                            depth,
                            ordinal,
                            text,
                            score,
                            40 * depth,
                            1 if finish else 0,
                            "answer" if finish else None,
                            answer,
                        )
                    )
                    ordinal += 1
                    if finish:
                        width -= 1
                    else:
                        new_frontier.append((node_id, score))
                prompt_tokens += 200 + 40 * depth
                completion_tokens += 40 * count
            frontier = new_frontier
        problem_rows.append(
            (
                problem_id,
                run.id,
                index,
                problem.source_id,
                problem.question,
                problem.reference_answer,
                "done",
                depth,
                prompt_tokens,
                completion_tokens,
                completion_tokens * 2,
                requests,
                requests,
                0,
                12.0,
                now,
                now,
            )
        )
    connection = sqlite3.connect(db_path)
    with connection:
        connection.executemany(
            "INSERT INTO problem (id, run_id, dataset_index, source_id, question, reference_answer,"
            " status, depth_completed, policy_prompt_tokens, policy_completion_tokens,"
            " reward_tokens, policy_requests, reward_requests, retries, elapsed_seconds,"
            " started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            problem_rows,
        )
        connection.executemany(
            "INSERT INTO node (id, problem_id, parent_id, depth, ordinal, text, score, path_tokens,"
            " terminal, terminal_reason, answer, prompt_tokens, completion_tokens)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,0,0)",
            node_rows,
        )
        connection.executemany(
            "INSERT INTO allocation (problem_id, depth, node_id, weight, children)"
            " VALUES (?,?,?,?,?)",
            allocation_rows,
        )
    connection.close()
    return int(run.id), len(node_rows), len(allocation_rows)


def time_cli(db_path: Path, run_id: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rebase_cli",
            "--db",
            str(db_path),
            "report",
            f"run-{run_id}",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"rebase report failed: {done.stderr.strip()}")
    json.loads(done.stdout)
    return elapsed


def stage_times(db_path: Path, run_id: int) -> dict[str, float]:
    """A warm report split into its stages, in process."""
    from rebase_cli.reports.build import ReportOptions, build_report
    from rebase_cli.reports.loading import load_run_data
    from rebase_cli.reports.render_json import render_json

    db = Database.open(db_path)
    run = resolve_run(db, f"run-{run_id}")
    times = {}
    start = time.perf_counter()
    data = load_run_data(db, run)
    times["load (SQL → numpy)"] = time.perf_counter() - start
    start = time.perf_counter()
    document = build_report(db, [run], ReportOptions())
    times["build_report (load + cache + select + views)"] = time.perf_counter() - start
    start = time.perf_counter()
    render_json(document)
    times["render json"] = time.perf_counter() - start
    times["finished answers"] = len(data.answers)
    times["distinct (answer, reference) pairs"] = document["runs"][0]["grading"]["pairs"]
    db.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", type=int, default=1319)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--db", type=Path, help="keep the database here (default: a temp dir)")
    args = parser.parse_args()
    os.environ.setdefault(
        "REBASE_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data")
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-report-"))
    db_path = args.db or folder / "bench.db"
    start = time.perf_counter()
    run_id, nodes, allocations = build_run(db_path, args.problems, args.budget)
    built = time.perf_counter() - start
    size = db_path.stat().st_size / 2**20
    print(
        f"built run-{run_id}: {args.problems} problems × budget {args.budget}, {nodes:,} nodes, "
        f"{allocations:,} allocation rows, {size:.0f} MiB in {built:.1f} s"
    )
    cold = time_cli(db_path, run_id)
    print(f"rebase report, cold (grades every distinct answer): {cold:6.2f} s")
    warm = [time_cli(db_path, run_id) for _ in range(3)]
    print(
        f"rebase report, warm (cached grades), best of 3:     {min(warm):6.2f} s  "
        f"(all: {', '.join(f'{w:.2f}' for w in warm)})  target < 5 s"
    )
    for name, value in stage_times(db_path, run_id).items():
        print(
            f"  {name:<48} {value:8.3f}" if isinstance(value, float) else f"  {name:<48} {value:8,}"
        )


if __name__ == "__main__":
    main()
