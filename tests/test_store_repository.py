"""The store's calls are transactions: a level commits whole or not at all, a read sees one
snapshot."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from rebase_cli.domain import LevelCommit, LevelCounters, NewNode, Problem, TerminalReason
from rebase_cli.errors import NotFoundError, RunLockedError, StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.leases import acquire_lease, renew_lease
from rebase_cli.store.models import AllocationRow, NodeRow, ProblemRow, Run
from rebase_cli.store.problems import add_problems, problems_of_run
from rebase_cli.store.runs import create_run, resolve_run
from rebase_cli.store.trees import load_tree
from tests.store_helpers import commit_level, commit_levels, load_allocations


def _run(db: Database, name: str | None = None) -> Run:
    return create_run(
        db,
        Run(
            name=name,
            method="rebase",
            dataset="gsm8k",
            dataset_sha256="x",
            budget=4,
            config_json="{}",
            fingerprint="fp",
        ),
    )


def _problem_id(db: Database, run: Run) -> int:
    add_problems(db, run.id, [Problem(0, "p0", "What is 1+1?", "2")])
    return problems_of_run(db, run.id)[0].id


def _root() -> LevelCommit:
    return LevelCommit(depth=0, nodes=(NewNode(0, 0, None, "", 1.0, 0),))


def _level_one(fail_on: int | None = None) -> LevelCommit:
    nodes = tuple(
        NewNode(1, i, 0, f"Step 1: {i}", 0.5, 5, 10, 5)
        if i != fail_on
        else NewNode(1, i, 99, "orphan", 0.5, 5)  # parent ordinal 99 does not exist
        for i in range(3)
    )
    return LevelCommit(
        depth=1,
        nodes=nodes,
        allocations=((0, 1.0, 3),),
        counters=LevelCounters(policy_prompt_tokens=10, policy_completion_tokens=15),
    )


def _count(db: Database, table: str) -> int:
    with db.read() as session:
        return session.connection().execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_level_commit_writes_nodes_allocation_and_counters(db: Database) -> None:
    run = _run(db)
    pid = _problem_id(db, run)
    commit_level(db, pid, _root())
    commit_level(db, pid, _level_one())
    tree = load_tree(db, pid)
    assert [(n.depth, n.ordinal) for n in tree] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert all(n.parent_id == tree[0].id for n in tree[1:])
    allocations = load_allocations(db, pid)
    assert [(a.depth, a.node_id, a.children) for a in allocations] == [(0, tree[0].id, 3)]
    problem = problems_of_run(db, run.id)[0]
    assert problem.depth_completed == 1
    assert problem.policy_completion_tokens == 15


def test_a_failing_commit_leaves_nothing_behind(db: Database) -> None:
    """Level 1 is written, then level 2 fails on a duplicate position inside the same
    transaction (SQLite's unique constraint): neither stays."""
    pid = _problem_id(db, _run(db))
    commit_level(db, pid, _root())
    before = (_count(db, "node"), _count(db, "allocation"))
    twice = NewNode(2, 0, 0, "Step 2", 0.5, 9)
    level_two = LevelCommit(depth=2, nodes=(twice, twice), allocations=((0, 1.0, 2),))
    with pytest.raises(StoreError, match="UNIQUE"):
        commit_levels(db, pid, [_level_one(), level_two])
    assert (_count(db, "node"), _count(db, "allocation")) == before
    assert problems_of_run(db, 1)[0].depth_completed == 0
    commit_level(db, pid, _level_one())  # the level can then be committed cleanly
    assert _count(db, "node") == 4


def test_level_rows_equal_those_the_orm_writes(db: Database) -> None:
    """The level commit bypasses the ORM: its rows must be the ones the models would write,
    column by column and storage type by type."""
    run = _run(db)
    add_problems(db, run.id, [Problem(i, f"p{i}", "q", "2") for i in range(2)])
    fast, orm = (p.id for p in problems_of_run(db, run.id))
    level = LevelCommit(
        depth=1,
        nodes=(
            NewNode(1, 0, 0, "Step 1: 2", 0.25, 7, 11, 7, "stop", TerminalReason.ANSWER, "2", 3),
            NewNode(1, 1, 0, "Step 1: x", 1.0, 5, 0, 5, "length", None, None, None),
        ),
        allocations=((0, 0.5, 2, 1),),
    )
    commit_levels(db, fast, [_root(), level])
    with db.write() as session:
        root = NodeRow(problem_id=orm, depth=0, ordinal=0, text="", score=1.0)
        session.add(root)
        session.flush()
        session.add(AllocationRow(problem_id=orm, depth=0, node_id=root.id, weight=0.5,
                                  children=2, subtree=1))  # fmt: skip
        for node in level.nodes:
            session.add(
                NodeRow(
                    problem_id=orm, parent_id=root.id, depth=1, ordinal=node.ordinal,
                    text=node.text, score=node.score, path_tokens=node.path_tokens,
                    prompt_tokens=node.prompt_tokens, completion_tokens=node.completion_tokens,
                    finish_reason=node.finish_reason, terminal=node.terminal,
                    terminal_reason=node.terminal_reason.value if node.terminal_reason else None,
                    answer=node.answer, seed=node.seed,
                )
            )  # fmt: skip

    def rows(table: str, problem_id: int) -> list[tuple]:
        with db.read() as session:
            connection = session.connection()
            names = [c[1] for c in connection.exec_driver_sql(f"PRAGMA table_info({table})")]
            kept = [n for n in names if n not in ("id", "problem_id", "parent_id", "node_id")]
            columns = ", ".join(f"{n}, typeof({n})" for n in kept)
            return connection.exec_driver_sql(
                f"SELECT {columns} FROM {table} WHERE problem_id = ? ORDER BY id", (problem_id,)
            ).all()

    assert rows("node", fast) == rows("node", orm)
    assert rows("allocation", fast) == rows("allocation", orm)
    with db.read() as session:
        started = session.get(ProblemRow, fast).started_at
    assert started is not None and started.tzinfo is not None  # reads back as the ORM's UTC


def test_exception_inside_a_write_transaction_rolls_back(db: Database) -> None:
    run = _run(db)
    with pytest.raises(RuntimeError), db.write() as session:
        session.add(Run(**{**run.model_dump(), "id": None, "name": "second"}))
        session.flush()
        raise RuntimeError("crash midway")
    assert _count(db, "run") == 1


def test_a_level_that_does_not_follow_is_refused(db: Database) -> None:
    pid = _problem_id(db, _run(db))
    commit_level(db, pid, _root())
    commit_level(db, pid, _level_one())
    with pytest.raises(StoreError, match="does not follow"):
        commit_level(db, pid, _level_one())
    assert _count(db, "node") == 4


def test_resolve_run_by_id_name_and_latest(db: Database) -> None:
    first = _run(db, "alpha")
    second = _run(db)
    assert resolve_run(db, f"run-{first.id}").id == first.id
    assert resolve_run(db, str(second.id)).id == second.id
    assert resolve_run(db, "alpha").id == first.id
    assert resolve_run(db, "latest").id == second.id
    with pytest.raises(NotFoundError, match="no run 'run-99'"):
        resolve_run(db, "run-99")


def test_duplicate_run_name_is_refused(db: Database) -> None:
    _run(db, "alpha")
    with pytest.raises(StoreError, match="already exists"):
        _run(db, "alpha")


def test_lease_refuses_a_second_owner_until_it_expires(db: Database) -> None:
    run = _run(db)
    acquire_lease(db, run.id, "owner-a", timedelta(seconds=30))
    with pytest.raises(RunLockedError):
        acquire_lease(db, run.id, "owner-b", timedelta(seconds=30))
    acquire_lease(db, run.id, "owner-a", timedelta(seconds=30))  # re-entrant


def test_stale_lease_of_a_dead_owner_is_taken_over(db: Database) -> None:
    run = _run(db)
    acquire_lease(db, run.id, "dead-owner", timedelta(seconds=-1))  # expired heartbeat
    acquire_lease(db, run.id, "new-owner", timedelta(seconds=30))
    assert not renew_lease(db, run.id, "dead-owner", timedelta(seconds=30))
    assert renew_lease(db, run.id, "new-owner", timedelta(seconds=30))


def test_a_driver_read_sees_one_snapshot_while_another_connection_commits(db: Database) -> None:
    # The reports read a run in several statements; a search committing in between must not
    # make them disagree (e.g. totals whose node count and problem counts are from two states).
    from rebase_cli.store.grades import count_grades, put_grades

    def count(cursor) -> int:  # type: ignore[no-untyped-def]
        return cursor.execute("SELECT count(*) FROM grade").fetchone()[0]

    with db.driver_read() as cursor:
        before = count(cursor)
        put_grades(db, "v1", "gsm8k", [("2", "2", True, None)])  # another connection commits
        assert count(cursor) == before
    assert count_grades(db) == before + 1  # committed, and seen by the next read


def test_a_driver_write_that_raises_leaves_nothing_and_frees_its_connection(db: Database) -> None:
    from rebase_cli.store.grades import count_grades

    insert = (
        "INSERT INTO grade (grader_version, dataset, answer, reference, correct) "
        "VALUES (?, ?, ?, ?, ?)"
    )
    for _ in range(3):  # more times than the pool holds idle connections
        with pytest.raises(RuntimeError), db.driver_write() as cursor:
            cursor.execute(insert, ("v1", "gsm8k", "1", "2", False))
            raise RuntimeError("the level failed half-way")
    assert count_grades(db) == 0
    with db.driver_write() as cursor:  # no transaction was left open on a pooled connection
        cursor.execute(insert, ("v1", "gsm8k", "1", "2", False))
    assert count_grades(db) == 1


def test_each_counter_of_several_levels_adds_to_its_own_column(db: Database) -> None:
    run = _run(db)
    pid = _problem_id(db, run)
    root = LevelCommit(0, _root().nodes, counters=LevelCounters(1, 2, 3, 4, 5, 6))
    one = _level_one()
    one = LevelCommit(1, one.nodes, one.allocations, LevelCounters(10, 20, 30, 40, 50, 60))
    commit_levels(db, pid, [root, one])
    problem = problems_of_run(db, run.id)[0]
    columns = (
        problem.policy_prompt_tokens,
        problem.policy_completion_tokens,
        problem.reward_tokens,
        problem.policy_requests,
        problem.reward_requests,
        problem.retries,
    )
    assert columns == (11, 22, 33, 44, 55, 66)
