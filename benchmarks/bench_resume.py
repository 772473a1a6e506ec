"""Resume cost: time from `rebase search --run RUN` starting to the first new model request,
when the run is 99% done on the full GSM8K test set (1,319 problems, budget 16).

    REBASE_DATA_DIR=../shared/data python benchmarks/bench_resume.py
        [--budget 16] [--template-problems 40] [--partial 6] [--pending 7] [--repeat 3]

Building the 99%-done run quickly: a real search (simulator, latency off) of the first
`--template-problems` problems gives real trees; every other problem gets a copy of one of
them written straight into SQLite (new node ids, parents and allocations remapped), with its
counters, and is marked done. `--partial` of the real problems are cut back to depth 2 and left
`running` (as a killed process leaves them: their committed levels must be reloaded), and the
last `--pending` problems of the dataset have no tree yet. 6 + 7 = 13 unfinished problems of
1,319 = 1%. The run is marked interrupted with no lease (as after Ctrl-C), so no stale-lease
wait is measured.

Measured (median of `--repeat`, each on a fresh copy of that database, the child interrupted
after the first request): the time from starting the child to the simulator counting its first
completion or scoring request (polling GET /sim/stats every 10 ms). Baselines in the same run:
the same command starting a NEW run of all 1,319 problems on an empty database, a new run of
one problem, and `rebase --version` (interpreter start-up and imports alone). Finally one
resume runs to the end, to check that it finished exactly the 13 unfinished problems.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from _common import (
    CliChild,
    data_env,
    header,
    model_requests,
    run_cli,
    search_args,
    sim_reset,
    sim_stats,
    start_simulator,
)

from rebase_cli.datasets import load_dataset
from rebase_cli.store.database import Database
from rebase_cli.store.problems import add_problems

POLL_S = 0.01
CUT_DEPTH = 2
NODE_COLUMNS = (
    "problem_id, parent_id, depth, ordinal, text, score, path_tokens, prompt_tokens, "
    "completion_tokens, finish_reason, terminal, terminal_reason, answer, seed"
)
PROBLEM_COPY = (
    "status", "depth_completed", "policy_prompt_tokens", "policy_completion_tokens",
    "reward_tokens", "policy_requests", "reward_requests", "elapsed_seconds", "started_at",
    "finished_at",
)  # fmt: skip


def build_almost_done_run(db_path: Path, url: str, args: argparse.Namespace) -> dict:
    """The run described in the module docstring; returns what it holds."""
    first = run_cli(
        db_path,
        search_args(url, url, problems=args.template_problems, budget=args.budget),
        env=data_env(),
    ).summary()
    run_id = int(first["run"].removeprefix("run-"))
    problems = load_dataset("gsm8k").problems
    db = Database.open(db_path)
    add_problems(db, run_id, problems)
    db.close()
    pending = set(range(len(problems) - args.pending, len(problems)))
    partial = set(range(args.partial))
    with closing(sqlite3.connect(db_path)) as connection, connection:
        by_index = {
            index: pid
            for pid, index in connection.execute(
                "SELECT id, dataset_index FROM problem WHERE run_id = ?", (run_id,)
            )
        }
        next_node = connection.execute("SELECT max(id) FROM node").fetchone()[0] + 1
        templates = {i: _tree(connection, by_index[i]) for i in range(args.template_problems)}
        for index in range(args.template_problems, len(problems)):
            if index in pending:
                continue
            template = templates[index % args.template_problems]
            next_node = _copy_tree(connection, template, by_index[index], next_node)
        for index in partial:
            _cut_back(connection, by_index[index], CUT_DEPTH)
        config = json.loads(
            connection.execute("SELECT config_json FROM run WHERE id = ?", (run_id,)).fetchone()[0]
        )
        config["limit"] = None  # a run over the whole dataset
        connection.execute(
            "UPDATE run SET config_json = ?, status = 'interrupted', lease_owner = NULL, "
            "lease_expires_at = NULL WHERE id = ?",
            (json.dumps(config), run_id),
        )
    with closing(sqlite3.connect(db_path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        counts = dict(
            connection.execute(
                "SELECT status, count(*) FROM problem WHERE run_id = ? GROUP BY status", (run_id,)
            ).fetchall()
        )
        nodes = connection.execute("SELECT count(*) FROM node").fetchone()[0]
    return {"run_id": run_id, "statuses": counts, "nodes": nodes}


def _tree(connection: sqlite3.Connection, problem_id: int) -> dict:
    nodes = connection.execute(
        f"SELECT id, {NODE_COLUMNS} FROM node WHERE problem_id = ? ORDER BY id", (problem_id,)
    ).fetchall()
    allocations = connection.execute(
        "SELECT depth, node_id, weight, children FROM allocation WHERE problem_id = ?",
        (problem_id,),
    ).fetchall()
    row = connection.execute(
        f"SELECT {', '.join(PROBLEM_COPY)} FROM problem WHERE id = ?", (problem_id,)
    ).fetchone()
    return {"nodes": nodes, "allocations": allocations, "problem": row}


def _copy_tree(connection: sqlite3.Connection, tree: dict, problem_id: int, next_id: int) -> int:
    """Insert `tree` as problem `problem_id`'s tree with ids from `next_id`; the next free id."""
    new_id: dict[int, int] = {}
    rows = []
    for old_id, _, parent_id, *rest in tree["nodes"]:
        new_id[old_id] = next_id
        parent = new_id[parent_id] if parent_id is not None else None
        rows.append((next_id, problem_id, parent, *rest))
        next_id += 1
    connection.executemany(
        f"INSERT INTO node (id, {NODE_COLUMNS}) VALUES ({', '.join('?' * 15)})", rows
    )
    connection.executemany(
        "INSERT INTO allocation (problem_id, depth, node_id, weight, children) "
        "VALUES (?, ?, ?, ?, ?)",
        [(problem_id, d, new_id[n], w, c) for d, n, w, c in tree["allocations"]],
    )
    connection.execute(
        f"UPDATE problem SET {', '.join(f'{c} = ?' for c in PROBLEM_COPY)} WHERE id = ?",
        (*tree["problem"], problem_id),
    )
    return next_id


def _cut_back(connection: sqlite3.Connection, problem_id: int, depth: int) -> None:
    """Leave only the levels up to `depth`, as if the process died while searching deeper."""
    connection.execute(
        "DELETE FROM allocation WHERE problem_id = ? AND depth >= ?", (problem_id, depth)
    )
    _delete_deep_nodes(connection, problem_id, depth)
    connection.execute(
        "UPDATE problem SET status = 'running', depth_completed = ?, finished_at = NULL "
        "WHERE id = ?",
        (depth, problem_id),
    )


def _delete_deep_nodes(connection: sqlite3.Connection, problem_id: int, depth: int) -> None:
    # Deepest first, so that no row is ever left pointing at a deleted parent.
    (deepest,) = connection.execute(
        "SELECT max(depth) FROM node WHERE problem_id = ?", (problem_id,)
    ).fetchone()
    for level in range(deepest, depth, -1):
        connection.execute(
            "DELETE FROM node WHERE problem_id = ? AND depth = ?", (problem_id, level)
        )


def time_to_first_request(db: Path, args: list[str], url: str, finish: bool = False):
    """Seconds from starting `rebase ARGS` to the simulator's first model request; the child
    is then interrupted (SIGINT, as Ctrl-C) unless `finish`. Returns (seconds, CliResult)."""
    sim_reset(url)
    child = CliChild(db, args)
    first = None
    while child.running():
        if model_requests(sim_stats(url)) > 0:
            first = time.monotonic() - child.started
            break
        time.sleep(POLL_S)
    if first is None:
        result = child.wait()
        raise SystemExit(f"no request was made; rebase said:\n{result.stderr[-2000:]}")
    if not finish:
        child.interrupt()
    return first, child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=16)
    parser.add_argument("--template-problems", type=int, default=40)
    parser.add_argument("--partial", type=int, default=6)
    parser.add_argument("--pending", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    header(f"resume cost: GSM8K test set (1,319 problems), budget {args.budget}, 99% done")
    with start_simulator() as sim, tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.db"
        started = time.monotonic()
        built = build_almost_done_run(prepared, sim.url, args)
        size = prepared.stat().st_size / 2**20
        print(
            f"built run-{built['run_id']} in {time.monotonic() - started:.1f} s: "
            f"{built['statuses']}, {built['nodes']:,} nodes, {size:.0f} MiB"
        )
        resume = ["search", "--run", f"run-{built['run_id']}", "--policy", sim.url,
                  "--reward", sim.url, "--json"]  # fmt: skip
        fresh_all = search_args(sim.url, sim.url, problems=1319, budget=args.budget)
        fresh_one = search_args(sim.url, sim.url, problems=1, budget=args.budget)

        figures: dict[str, list[float]] = {"resume": [], "new run, 1,319": [], "new run, 1": []}
        for attempt in range(args.repeat):
            db = Path(tmp) / f"resume{attempt}.db"
            shutil.copyfile(prepared, db)
            figures["resume"].append(time_to_first_request(db, resume, sim.url)[0])
            empty = Path(tmp) / f"fresh{attempt}.db"
            figures["new run, 1,319"].append(time_to_first_request(empty, fresh_all, sim.url)[0])
            one = Path(tmp) / f"one{attempt}.db"
            figures["new run, 1"].append(time_to_first_request(one, fresh_one, sim.url)[0])

        imports = statistics.median(
            run_cli(Path(tmp) / "version.db", ["--version"]).wall for _ in range(args.repeat)
        )
        print(f"\ntime from start to the first model request (median of {args.repeat}):")
        baseline = statistics.median(figures["new run, 1"])
        for what, values in figures.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.2f}" for v in values)
            print(
                f"  {what:16} {median:6.2f} s  ({median / baseline:4.2f}x a new 1-problem run;"
                f" each: {runs})"
            )
        print(f"  (`rebase --version`, i.e. interpreter start-up and imports: {imports:.2f} s)")

        db = Path(tmp) / "complete.db"
        shutil.copyfile(prepared, db)
        before = nodes_by_problem(db)
        first, result = time_to_first_request(db, resume, sim.url, finish=True)
        summary = result.summary()
        after = nodes_by_problem(db)
        grown = sorted(i for i in after if after[i] != before.get(i, 0))
        print(
            f"\nresumed to the end: first request after {first:.2f} s, search "
            f"{summary['wall_seconds']:.1f} s, process {result.wall:.1f} s; "
            f"{summary['done']}/{summary['problems']} done, {summary['failed']} failed; "
            f"{model_requests(sim_stats(sim.url)):,} model requests; trees that changed: "
            f"{len(grown)} (dataset indexes {grown})"
        )


def nodes_by_problem(db: Path) -> dict[int, int]:
    with closing(sqlite3.connect(db)) as connection:
        return dict(
            connection.execute(
                "SELECT p.dataset_index, count(n.id) FROM problem p "
                "LEFT JOIN node n ON n.problem_id = p.id GROUP BY p.id"
            ).fetchall()
        )


if __name__ == "__main__":
    main()
