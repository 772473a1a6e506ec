"""Crash/resume torture: SIGKILL `rebase search` at seeded random moments and resume it each
time; SIGKILL `rebase report` while it fills the grade cache; SIGKILL a process while it creates
and migrates a brand-new database. After every kill `PRAGMA integrity_check` must be ok, and at
the end the database must hold exactly what an uninterrupted process would have written.

The search runs against a simulator that answers each request after 100 ms, so a run of 32
problems takes several seconds of wall time and the kills land inside the search rather than
around it. The simulator's latency changes no result, so the reference run (computed once, on
a fast simulator) is the uninterrupted run to compare with. `benchmarks/torture.py` is the long
version of the first test.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rebase_cli.store.database import Database
from rebase_cli.store.migrate import head_revision
from tests.search_helpers import (
    check_allocations,
    cli_env,
    copy_db,
    diff_runs,
    dump_run,
    integrity,
    kill_and_resume,
    live_group,
    query,
    rebase,
    reference_db,
    reference_run,
    run_status,
    search_args,
    start_rebase,
    start_simulator,
    wait_until,
)

BUDGET = 8
LIMIT = 32
KILLS = 10


@pytest.fixture(scope="module")
def slow_sim():
    with start_simulator("--base-ms", "100") as simulator:
        yield simulator


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(
    slow_sim, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = reference_run(tmp_path_factory.getbasetemp(), budget=BUDGET, limit=LIMIT)
    url = slow_sim.url
    result = kill_and_resume(
        tmp_path / "rebase.db",
        search_args(url, budget=BUDGET, limit=LIMIT, concurrency=4),
        lambda run_id: ["search", "--run", f"run-{run_id}", "--policy", url, "--reward", url],
        kills=KILLS,
        rng=random.Random(20240824),
        delay=(0.1, 1.0),
        logs=tmp_path / "logs",
    )
    db = tmp_path / "rebase.db"
    print(
        f"\n{result.kills} kills ({result.mid_run_kills} mid-run, {result.refused} resumes "
        f"refused on a live lease), nodes at each kill {result.nodes_at_kill}, "
        f"{result.seconds:.1f} s"
    )
    assert result.mid_run_kills >= KILLS, "the run finished before enough kills: lengthen it"
    assert result.integrity == ["ok"] * len(result.integrity)
    assert result.final is not None
    assert result.final.returncode == 0, result.final.stdout + result.final.stderr
    assert result.nodes_at_kill == sorted(result.nodes_at_kill)  # nothing committed is lost
    assert run_status(db, result.run_id) == "done"
    actual = dump_run(db, result.run_id)
    # Node texts, scores, parents, token counts, answers, allocations and problem rows.
    assert diff_runs(expected, actual) == []
    assert check_allocations(actual, BUDGET) == []
    assert integrity(db) == "ok"


def _report_json(db: Path) -> dict:
    done = rebase(db, "report", "run-1", "--format", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    for run in document["runs"]:
        run.pop("grading", None)  # how many verdicts were cached: differs by design
    return document


def _grades(db: Path) -> list[tuple]:
    return query(
        db,
        "SELECT grader_version, dataset, reference, answer, correct, reason FROM grade "
        "ORDER BY grader_version, dataset, reference, answer",
    )


def test_sigkill_during_report_leaves_a_sound_cache(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = reference_db(tmp_path_factory.getbasetemp(), budget=BUDGET, limit=LIMIT)
    pristine = copy_db(source, tmp_path / "pristine.db")
    started = time.monotonic()
    expected = _report_json(pristine)
    full = time.monotonic() - started

    db = copy_db(source, tmp_path / "killed.db")
    rng = random.Random(7)
    for _ in range(4):
        child = start_rebase(db, "report", "run-1", "--format", "json", logs=tmp_path / "logs")
        time.sleep(rng.uniform(0.2, full))
        child.kill()
        assert integrity(db) == "ok"
        # The grading worker notices its parent is gone (stdin closes) and exits.
        wait_until(lambda pid=child.process.pid: not live_group(pid), timeout=30, every=0.1)
    cached_before = len(_grades(db))
    assert _report_json(db) == expected
    assert _grades(db) == _grades(pristine)
    assert cached_before <= len(_grades(db))
    assert integrity(db) == "ok"


OPEN_NEW_DATABASE = """
import sys, time
from pathlib import Path
from rebase_cli.store.database import Database
print("ready", flush=True)
started = time.monotonic()
Database.open(Path(sys.argv[1]))
print(f"opened {time.monotonic() - started:.4f}", flush=True)
"""
TABLES = {"alembic_version", "run", "problem", "node", "allocation", "server", "grade"}


def _open_child(path: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", OPEN_NEW_DATABASE, str(path)],
        env=cli_env(path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    return child


def _state(path: Path) -> str:
    """ "missing", "empty" (no table at all) or "head"; anything else fails the test."""
    if not path.exists():
        return "missing"
    tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return "empty"
    assert tables >= TABLES, f"half-migrated database: {sorted(tables)}"
    assert query(path, "SELECT version_num FROM alembic_version") == [(head_revision(),)]
    return "head"


def test_sigkill_during_migration_on_open_never_leaves_half_a_schema(tmp_path: Path) -> None:
    # How long a child takes to create and migrate a database on this machine (the fastest of
    # three, so that the kills below land inside the open even when the machine is idle).
    timings = []
    for attempt in range(3):
        timing = _open_child(tmp_path / f"timing-{attempt}.db")
        out, err = timing.communicate(timeout=60)
        assert timing.returncode == 0, err
        timings.append(float(out.split()[-1]))
    duration = min(timings)

    rng = random.Random(11)
    states: dict[str, int] = {}
    interrupted_opens = 0
    for attempt in range(12):
        path = tmp_path / f"new-{attempt}.db"
        child = _open_child(path)
        time.sleep(rng.uniform(0, 1.3 * duration))
        child.kill()
        out, _ = child.communicate(timeout=30)
        interrupted_opens += "opened" not in out
        if path.exists():
            assert integrity(path) == "ok"
        state = _state(path)
        states[state] = states.get(state, 0) + 1
        # Whatever the kill left, the next open brings the database to the head revision.
        Database.open(path).close()
        assert _state(path) == "head"
        assert integrity(path) == "ok"
    print(f"\nopen+migrate {duration * 1000:.0f} ms; states after kills {states}; "
          f"{interrupted_opens} kills landed before the open returned")  # fmt: skip
    assert interrupted_opens >= 1
