"""`rebase search` end to end: a real simulator process, the real CLI as a child process, a
real SQLite file read back independently (issue 4's "done when").

One uninterrupted run of 50 GSM8K problems at budget 16 is the reference. Runs that are killed
(SIGKILL) or interrupted (SIGINT) and then resumed must end with exactly its trees: a problem's
tree depends only on the seed, its index and the config, so a run of its first 12 problems is
compared with the reference's first 12.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from tests.search_helpers import (
    check_allocations,
    committed_prefix_errors,
    copy_db,
    diff_runs,
    dump_run,
    integrity,
    node_count,
    query,
    rebase,
    run_status,
    search_args,
    start_rebase,
    start_simulator,
    subset,
    wait_until,
)

BUDGET = 16
LIMIT = 50
SHORT = 12  # problems of the killed / interrupted runs


@dataclass
class Reference:
    db: Path
    stdout: str
    stderr: str
    returncode: int
    dump: dict[int, dict]


@pytest.fixture(scope="module")
def sim():
    with start_simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def reference(sim, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    db = tmp_path_factory.mktemp("e2e-reference") / "rebase.db"
    done = rebase(db, *search_args(sim.url, budget=BUDGET, limit=LIMIT, concurrency=32))
    dump = dump_run(db, 1) if done.returncode == 0 else {}
    return Reference(db, done.stdout, done.stderr, done.returncode, dump)


def short_search(sim, *extra: str) -> list[str]:
    return search_args(sim.url, budget=BUDGET, limit=SHORT, concurrency=32, extra=extra)


def invoke(db: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(db), *args])


def test_search_over_50_problems_persists_every_tree(reference: Reference) -> None:
    assert reference.returncode == 0, reference.stdout + reference.stderr
    assert f"{LIMIT}/{LIMIT} problems done, 0 failed" in reference.stdout
    assert "SIMULATED" in reference.stdout
    assert f"report: rebase --db {reference.db} report run-1" in reference.stdout
    assert run_status(reference.db, 1) == "done"
    assert integrity(reference.db) == "ok"
    dump = reference.dump
    assert sorted(dump) == list(range(LIMIT))
    assert {p["row"]["status"] for p in dump.values()} == {"done"}
    # Allocations sum to the remaining width at every level, children match them, and no
    # problem has more finished answers than its budget.
    assert check_allocations(dump, BUDGET) == []
    for index, problem in dump.items():
        nodes = problem["nodes"]
        root = nodes[(0, 0)]
        assert root["parent"] is None and root["score"] == 1.0, index
        assert all(n["parent"][0] == d - 1 for (d, _), n in nodes.items() if d > 0), index
        assert any(n["answer"] is not None for n in nodes.values()), index
        assert problem["row"]["depth_completed"] == max(d for d, _ in nodes)
    shown = invoke(reference.db, "runs", "show", "run-1", "--json")
    totals = json.loads(shown.stdout)["totals"]
    assert totals["nodes"] == sum(len(p["nodes"]) for p in dump.values())
    assert totals["done"] == LIMIT and totals["failed"] == 0


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_trees(
    sim, reference: Reference, tmp_path: Path
) -> None:
    db = tmp_path / "rebase.db"
    expected = subset(reference.dump, range(SHORT))
    total = sum(len(p["nodes"]) for p in expected.values())
    child = start_rebase(db, *short_search(sim), logs=tmp_path / "logs")
    wait_until(lambda: node_count(db) >= total // 4 or child.process.poll() is not None)
    child.kill()
    assert child.process.returncode == -9, child.output()

    assert integrity(db) == "ok"
    assert run_status(db, 1) == "running"  # what a dead process leaves behind
    partial = dump_run(db, 1)
    assert 0 < sum(len(p["nodes"]) for p in partial.values()) < total
    assert committed_prefix_errors(partial, expected) == []

    resumed = rebase(db, "search", "--run", "run-1", "--policy", sim.url, "--reward", sim.url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run-1" in resumed.stdout
    assert run_status(db, 1) == "done"
    # Same node texts, scores, parents, allocations and answers; no node lost or duplicated
    # (dump_run refuses duplicates by (depth, ordinal)).
    assert diff_runs(expected, dump_run(db, 1)) == []
    assert integrity(db) == "ok"


@pytest.fixture(scope="module")
def slow_sim():
    """The same simulator answering after 100 ms: a search long enough to interrupt (the
    trees do not depend on latency)."""
    with start_simulator("--base-ms", "100") as simulator:
        yield simulator


def test_ctrl_c_leaves_a_resumable_run_and_resume_picks_it(
    slow_sim, reference: Reference, tmp_path: Path
) -> None:
    sim = slow_sim
    db = tmp_path / "rebase.db"
    expected = subset(reference.dump, range(SHORT))
    total = sum(len(p["nodes"]) for p in expected.values())
    child = start_rebase(db, *short_search(sim), logs=tmp_path / "logs")
    wait_until(lambda: node_count(db) >= total // 4 or child.process.poll() is not None)
    child.interrupt()
    assert child.wait(60) == 130, child.output()
    assert f"interrupted; resume with: rebase --db {db} search --run run-1" in child.stderr
    assert "Traceback" not in child.output()
    assert run_status(db, 1) == "interrupted"
    assert query(db, "SELECT lease_owner FROM run WHERE id = 1") == [(None,)]
    assert integrity(db) == "ok"
    partial = dump_run(db, 1)
    assert sum(len(p["nodes"]) for p in partial.values()) < total
    assert committed_prefix_errors(partial, expected) == []

    # `--resume` with the same flags finds run-1 by its config fingerprint and says so.
    resumed = rebase(db, *short_search(sim, "--resume"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run-1 (same config fingerprint" in resumed.stdout
    assert [r[0] for r in query(db, "SELECT id FROM run")] == [1]
    assert diff_runs(expected, dump_run(db, 1)) == []


def test_resume_with_another_budget_is_refused_listing_the_keys(
    sim, reference: Reference, tmp_path: Path
) -> None:
    db = copy_db(reference.db, tmp_path / "copy.db")
    before = query(db, "SELECT id, status, updated_at, config_json FROM run")
    nodes = node_count(db)
    refused = invoke(
        db,
        "search",
        "--run",
        "run-1",
        "--budget",
        "32",
        "--seed",
        "8",
        "--policy",
        sim.url,
        "--reward",
        sim.url,
    )
    assert refused.exit_code == 1
    message = refused.output.strip()
    assert len(message.splitlines()) == 1, message
    assert "run-1 was made with another config" in message
    assert "budget: 16 → 32" in message and "seed: 7 → 8" in message
    assert query(db, "SELECT id, status, updated_at, config_json FROM run") == before
    assert node_count(db) == nodes


def test_runs_list_show_and_delete(reference: Reference, tmp_path: Path) -> None:
    db = copy_db(reference.db, tmp_path / "copy.db")
    listed = invoke(db, "runs", "--json")
    assert listed.exit_code == 0, listed.output
    [run] = json.loads(listed.stdout)
    assert run["run"] == "run-1" and run["status"] == "done" and run["simulated"] is True
    assert run["budget"] == BUDGET and run["problems"] == {"done": LIMIT}
    table = invoke(db, "runs")
    assert "run-1" in table.stdout and f"{LIMIT}/{LIMIT}" in table.stdout

    shown = invoke(db, "runs", "show", "run-1")
    assert shown.exit_code == 0 and "fingerprint" in shown.stdout

    deleted = invoke(db, "runs", "delete", "run-1", "--yes")
    assert deleted.exit_code == 0 and "deleted run-1" in deleted.stdout
    assert json.loads(invoke(db, "runs", "--json").stdout) == []
    for table_name in ("run", "problem", "node", "allocation"):
        assert query(db, f"SELECT count(*) FROM {table_name}") == [(0,)], table_name
    assert integrity(db) == "ok"

    missing = invoke(db, "runs", "show", "run-1")
    assert missing.exit_code == 1
    assert len(missing.output.strip().splitlines()) == 1
    assert "no run 'run-1'" in missing.output
