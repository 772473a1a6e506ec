"""CPU per tree node of the level commit: this checkout against a baseline checkout, on the
same levels, in one run of this script.

    python benchmarks/bench_level_commit.py --baseline PATH [--problems 100] [--depth 9]
        [--width 16] [--repeat 3]

PATH is a checkout of the commit to compare with (e.g. `git worktree add /tmp/base HEAD~2`).
Each side runs in its own interpreter with its own `rebase_cli` on the path, on a fresh
database: `problems` x `depth` levels of `width` nodes each (plus a root level per problem),
each level committed in its own transaction under a held lease, the way the runner commits
it (the baseline through FencedDatabase + commit_level, this checkout through
SqliteSearchStore.commit_levels). Measured: time.process_time() of the commit loop only,
median of `--repeat`, divided by the nodes written. The two databases' rows are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, tempfile, time
from datetime import timedelta
from pathlib import Path
from rebase_cli.domain import LevelCommit, LevelCounters, NewNode, Problem, TerminalReason
try:  # a baseline from before store/repository.py was split into a module per concept
    from rebase_cli.store import repository as repo
except ImportError:
    from types import SimpleNamespace
    from rebase_cli.store import leases, problems, runs
    repo = SimpleNamespace(create_run=runs.create_run, add_problems=problems.add_problems,
                           problems_of_run=problems.problems_of_run,
                           acquire_lease=leases.acquire_lease)
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run

problems, depth, width, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
db = Database.open(Path(out))
run = repo.create_run(db, Run(method="rebase", dataset="d", dataset_sha256="x", budget=width,
                              config_json="{}", fingerprint="f"))
repo.add_problems(db, run.id, [Problem(i, str(i), f"q{i}", "1") for i in range(problems)])
ids = [p.id for p in repo.problems_of_run(db, run.id)]
repo.acquire_lease(db, run.id, "bench", timedelta(seconds=3600))
if hasattr(repo, "FencedDatabase"):
    fenced = repo.FencedDatabase(db, run.id, "bench")
    commit = lambda pid, level: repo.commit_level(fenced, pid, level, 0.01)
else:
    from rebase_cli.store.sqlite_store import SqliteSearchStore
    store = SqliteSearchStore(db, run.id, "bench")
    commit = lambda pid, level: store.commit_levels(pid, [level], 0.01)

def level(d):
    if d == 0:
        return LevelCommit(depth=0, nodes=(NewNode(0, 0, None, "", 1.0, 0),))
    parents = 1 if d == 1 else 4
    nodes = tuple(
        NewNode(d, i, i % parents, f"Step {d}: some reasoning text number {i} " * 3,
                0.5 + i / 100, 40 * d, 90 if i % 4 == 0 else 0, 40, "stop",
                TerminalReason.ANSWER if i == width - 1 else None,
                "7" if i == width - 1 else None, 1234 + i)
        for i in range(width))
    allocations = tuple((p, 1.0 / parents, width // parents, None) for p in range(parents))
    return LevelCommit(d, nodes, allocations, LevelCounters(90, 40 * width, 500, 4, 4, 0))

levels = [level(d) for d in range(depth + 1)]
started = time.process_time()
for d in range(depth + 1):
    for pid in ids:
        commit(pid, levels[d])
cpu = time.process_time() - started
nodes = problems * (1 + depth * width)
print(json.dumps({"cpu_s": cpu, "nodes": nodes, "levels": problems * (depth + 1)}))
"""

DUMP = (
    "SELECT n.problem_id, n.depth, n.ordinal, p.ordinal, n.text, n.score, n.path_tokens, "
    "n.prompt_tokens, n.completion_tokens, n.finish_reason, n.terminal, n.terminal_reason, "
    "n.answer, n.seed FROM node n LEFT JOIN node p ON p.id = n.parent_id ORDER BY n.id"
)


def measure(checkout: Path, args: argparse.Namespace, workdir: Path, tag: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    runs = []
    for attempt in range(args.repeat):
        out = workdir / f"{tag}-{attempt}.db"
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(args.problems), str(args.depth), str(args.width),
             str(out)],
            env=env, check=True, capture_output=True, text=True, cwd=checkout,
        )  # fmt: skip
        runs.append(json.loads(done.stdout))
    cpu = statistics.median(r["cpu_s"] for r in runs)
    nodes = runs[0]["nodes"]
    return {"cpu_s": cpu, "nodes": nodes, "levels": runs[0]["levels"],
            "ms_per_node": 1000 * cpu / nodes, "db": workdir / f"{tag}-0.db"}  # fmt: skip


def rows(path: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        nodes = connection.execute(DUMP).fetchall()
        allocations = connection.execute(
            "SELECT problem_id, depth, weight, children, subtree FROM allocation ORDER BY id"
        ).fetchall()
        counters = connection.execute(
            "SELECT depth_completed, policy_prompt_tokens, policy_completion_tokens, "
            "reward_tokens, policy_requests, reward_requests, retries, elapsed_seconds "
            "FROM problem ORDER BY id"
        ).fetchall()
    return [nodes, allocations, counters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True)
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--depth", type=int, default=9)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = measure(args.baseline.resolve(), args, workdir, "baseline")
        new = measure(HERE, args, workdir, "new")
        same = rows(base["db"]) == rows(new["db"])
    print(f"{new['levels']:,} levels, {new['nodes']:,} nodes, median of {args.repeat}")
    for name, result in (("baseline", base), ("this checkout", new)):
        print(f"  {name:14} {result['cpu_s']:.3f} s CPU  {result['ms_per_node']:.4f} ms/node")
    print(f"  ratio {new['ms_per_node'] / base['ms_per_node']:.3f}; same rows: {same}")


if __name__ == "__main__":
    main()
