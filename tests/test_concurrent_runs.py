"""Several `rebase search` processes on one database: different runs proceed side by side; one
run is searched by one process at a time (a lease renewed by a heartbeat), and the lease of a
process that was killed is taken over once it expires."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from rebase_cli.domain import LevelCommit, NewNode, Problem, RunStatus
from rebase_cli.errors import RunLockedError
from rebase_cli.store.models import Run
from rebase_cli.store.problems import add_problems, problems_of_run
from rebase_cli.store.runs import create_run, resolve_run
from rebase_cli.store.sqlite_store import SqliteSearchStore
from rebase_cli.store.trees import load_tree
from tests.search_helpers import (
    connect,
    diff_runs,
    dump_run,
    integrity,
    node_count,
    query,
    rebase,
    reference_run,
    run_status,
    search_args,
    start_rebase,
    start_simulator,
    subset,
    wait_until,
)

BUDGET = 8
LIMIT = 12
REFERENCE_LIMIT = 32  # shared with the torture test: one reference run serves all
LOCKED = "is being searched by another process"


@pytest.fixture(scope="module")
def sim():
    # Enough latency (a level is two requests) that two processes are certainly searching at
    # the same time, and that a run is still going when a test interrupts it.
    with start_simulator("--base-ms", "150") as simulator:
        yield simulator


@pytest.fixture
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    full = reference_run(tmp_path_factory.getbasetemp(), budget=BUDGET, limit=REFERENCE_LIMIT)
    return subset(full, range(LIMIT))


def resume_args(sim) -> list[str]:
    return ["search", "--run", "run-1", "--policy", sim.url, "--reward", sim.url]


def lease_owner(db: Path) -> str | None:
    return query(db, "SELECT lease_owner FROM run WHERE id = 1")[0][0]


def test_two_searches_on_one_database_both_finish(sim, expected, tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    logs = tmp_path / "logs"
    a = search_args(sim.url, concurrency=12, extra=("--name", "a"))
    b = search_args(sim.url, concurrency=2, extra=("--name", "b"))
    first = start_rebase(db, *a, logs=logs)
    second = start_rebase(db, *b, logs=logs)
    # Both are writing at the same time: each run has nodes while both processes live.
    wait_until(lambda: node_count(db, 1) > 0 and node_count(db, 2) > 0, every=0.05)
    assert first.process.poll() is None and second.process.poll() is None
    assert first.wait(180) == 0, first.output()
    assert second.wait(180) == 0, second.output()
    names = dict(query(db, "SELECT name, id FROM run"))
    for name in ("a", "b"):
        assert run_status(db, names[name]) == "done"
        assert diff_runs(expected, dump_run(db, names[name])) == []
    assert integrity(db) == "ok"


def _interrupted_run(sim, db: Path, logs: Path) -> None:
    child = start_rebase(db, *search_args(sim.url), logs=logs)
    wait_until(lambda: node_count(db) >= 20 or child.process.poll() is not None)
    child.interrupt()
    assert child.wait(60) == 130, child.output()


def test_second_resume_of_a_running_run_is_refused(sim, expected, tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    logs = tmp_path / "logs"
    _interrupted_run(sim, db, logs)
    # The default 30 s lease: a heartbeat delayed by a busy machine never loses it here.
    env = {"REBASE_LEASE_TTL": "30"}
    both = [start_rebase(db, *resume_args(sim), logs=logs, env=env) for _ in range(2)]
    codes = sorted(child.wait(180) for child in both)
    assert codes == [0, 1], [child.output() for child in both]
    loser = next(child for child in both if child.process.returncode == 1)
    [line] = loser.stderr.strip().splitlines()
    assert line.startswith(f"error: run-1 {LOCKED}") and "wait for it to finish" in line
    assert "Traceback" not in loser.output()
    assert run_status(db, 1) == "done" and lease_owner(db) is None
    assert diff_runs(expected, dump_run(db, 1)) == []


def test_stale_lease_of_a_killed_process_on_another_host_is_taken_over_after_it_expires(
    sim, expected, tmp_path: Path
) -> None:
    db = tmp_path / "rebase.db"
    logs = tmp_path / "logs"
    # A 15 s lease renewed every 5 s: it outlives the killed process by at least 10 s,
    # longer than the next process needs to start.
    env = {"REBASE_LEASE_TTL": "15"}
    victim = start_rebase(db, *search_args(sim.url), logs=logs, env=env)
    wait_until(lambda: node_count(db) >= 40 or victim.process.poll() is not None)
    victim.kill()
    # A dead holder on this machine is taken over at once (tests/test_signals_and_leases.py);
    # one on another machine (the database on a shared filesystem) cannot be checked, so its
    # lease must expire first. The killed holder's id, moved to another host:
    host, rest = lease_owner(db).split(":", 1)  # type: ignore[union-attr]
    stale = f"other-{host}:{rest}"
    with connect(db) as connection:
        connection.execute("UPDATE run SET lease_owner = ? WHERE id = 1", (stale,))
    assert run_status(db, 1) == "running"

    refused = rebase(db, *resume_args(sim), env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert LOCKED in line and stale in line
    wait = re.search(r"retry in (\d+)s when its lease expires", line)
    assert wait is not None, line
    assert lease_owner(db) == stale

    time.sleep(int(wait.group(1)) + 0.5)
    taken = rebase(db, *resume_args(sim), env=env)
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert "resuming run-1" in taken.stdout
    assert run_status(db, 1) == "done" and lease_owner(db) is None
    assert diff_runs(expected, dump_run(db, 1)) == []


def stop_outside_a_write(process: subprocess.Popen, db: Path) -> None:
    """SIGSTOP `process` at a moment it holds no write lock. SQLite cannot take a write lock
    away from a stopped process: one stopped inside a transaction blocks every writer until it
    wakes, which is not the race under test here."""
    for _ in range(200):
        process.send_signal(signal.SIGSTOP)
        probe = sqlite3.connect(db, timeout=0.05, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            probe.close()
    raise AssertionError("the holder was inside a write transaction at every try")


def test_a_stalled_holder_that_wakes_after_a_takeover_does_not_disturb_the_new_one(
    sim, expected, tmp_path: Path
) -> None:
    """A holder that stops (SIGSTOP: a suspended laptop, a stalled disk) loses its lease when
    it expires; the process that takes over must finish undisturbed when the old one wakes up,
    and the old one must stop once it sees the lease gone."""
    db = tmp_path / "rebase.db"
    logs = tmp_path / "logs"
    env = {"REBASE_LEASE_TTL": "3"}
    stalled = start_rebase(db, *search_args(sim.url), logs=logs, env=env)
    try:
        wait_until(lambda: node_count(db) >= 40 or stalled.process.poll() is not None)
        stop_outside_a_write(stalled.process, db)
        time.sleep(3.5)
        taker = start_rebase(db, *resume_args(sim), logs=logs, env=env)
        before = node_count(db)
        wait_until(lambda: node_count(db) >= before + 40 or taker.process.poll() is not None)
        stalled.process.send_signal(signal.SIGCONT)
        assert taker.wait(180) == 0, taker.output()
        assert stalled.wait(60) == 1, stalled.output()
    finally:
        stalled.process.send_signal(signal.SIGCONT)
        stalled.kill()
    assert "was taken over by another process" in stalled.stderr
    assert run_status(db, 1) == "done" and lease_owner(db) is None
    assert diff_runs(expected, dump_run(db, 1)) == []


def test_the_fence_refuses_writes_from_a_holder_that_lost_the_lease(db) -> None:
    """The same race, deterministic: the old holder's level commit is refused once the lease
    changed hands, and the new holder's commit of that level goes through."""
    run = create_run(
        db,
        Run(
            method="rebase",
            dataset="x",
            dataset_sha256="0",
            budget=2,
            config_json="{}",
            fingerprint="f",
        ),
    )
    add_problems(db, run.id, [Problem(0, "0", "q", "1")])
    [problem] = problems_of_run(db, run.id)
    root = LevelCommit(depth=0, nodes=(NewNode(0, 0, None, "", 1.0, 0),))
    old = SqliteSearchStore(db, run.id, "old")
    old.take_lease(timedelta(seconds=-1), lambda holder: False)  # stalled: already expired
    new = SqliteSearchStore(db, run.id, "new")
    new.take_lease(timedelta(seconds=30), lambda holder: False)
    with pytest.raises(RunLockedError, match="taken over"):
        old.commit_levels(problem.id, [root], 0.0)
    new.commit_levels(problem.id, [root], 0.0)
    assert [n.depth for n in load_tree(db, problem.id)] == [0]
    assert not old.close(RunStatus.INTERRUPTED, 0.0)
    assert new.close(RunStatus.DONE, 0.0)
    assert resolve_run(db, f"run-{run.id}").status == "done"
