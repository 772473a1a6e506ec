"""The SearchStore contract (store/search_store.py), run against every implementation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from rebase_cli.domain import (
    LevelCommit,
    LevelCounters,
    NewNode,
    Problem,
    RunStatus,
    TerminalReason,
)
from rebase_cli.errors import RunLockedError, StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.memory_store import InMemorySearchStore, MemoryRun
from rebase_cli.store.models import Run
from rebase_cli.store.problems import add_problems
from rebase_cli.store.runs import create_run
from rebase_cli.store.search_store import SearchStore
from rebase_cli.store.sqlite_store import SqliteSearchStore

TTL = timedelta(seconds=30)
EXPIRED = timedelta(seconds=-1)  # a lease whose holder stopped heartbeating


def never_gone(holder: str) -> bool:
    return False


# Added out of dataset order: the stores hand them back in dataset order.
PROBLEMS = [Problem(index, f"p{index}", f"Question {index}?", "2") for index in (2, 0, 1)]


@dataclass
class Backend:
    """Stores of one run for any owner, over one shared state (a database, a MemoryRun)."""

    store: Callable[[str], SearchStore]


@pytest.fixture(params=["sqlite", "memory"])
def backend(request: pytest.FixtureRequest, db: Database) -> Backend:
    if request.param == "memory":
        run = MemoryRun(PROBLEMS)
        return Backend(lambda owner: InMemorySearchStore(run, owner))
    stored = create_run(
        db,
        Run(method="rebase", dataset="d", dataset_sha256="x", budget=2, config_json="{}",
            fingerprint="f"),
    )  # fmt: skip
    add_problems(db, stored.id, PROBLEMS)
    return Backend(lambda owner: SqliteSearchStore(db, stored.id, owner))


def held(backend: Backend, owner: str = "a") -> SearchStore:
    store = backend.store(owner)
    store.take_lease(TTL, never_gone)
    return store


def root() -> LevelCommit:
    return LevelCommit(depth=0, nodes=(NewNode(0, 0, None, "", 1.0, 0),))


def level(depth: int, parents: int, per_parent: int = 2, bad_parent: bool = False) -> LevelCommit:
    """`per_parent` children of each of `parents` parents; with `bad_parent` the last child
    names a parent that does not exist."""
    nodes = []
    for parent in range(parents):
        for _ in range(per_parent):
            ordinal = len(nodes)
            nodes.append(
                NewNode(
                    depth=depth,
                    ordinal=ordinal,
                    parent_ordinal=parent,
                    text=f"Step {depth}: {ordinal}",
                    score=0.125 * (ordinal + 1),
                    path_tokens=7 * depth,
                    prompt_tokens=13 if ordinal == 0 else 0,
                    completion_tokens=7,
                    finish_reason="stop",
                    terminal_reason=TerminalReason.ANSWER if ordinal == 1 else None,
                    answer="2" if ordinal == 1 else None,
                    seed=ordinal if ordinal % 2 else None,
                )
            )
    if bad_parent:
        nodes[-1] = NewNode(depth, len(nodes) - 1, 99, "orphan", 0.5, 5)
    allocations = tuple((parent, 1.0 / parents, per_parent, None) for parent in range(parents))
    return LevelCommit(
        depth=depth,
        nodes=tuple(nodes),
        allocations=allocations,
        counters=LevelCounters(policy_prompt_tokens=13, policy_completion_tokens=7 * len(nodes)),
    )


def first_problem(store: SearchStore) -> int:
    return store.pending_problems()[0].id


# ------------------------------------------------------------------------------- lease


def test_a_held_lease_is_refused_to_another_owner_and_changes_nothing(backend: Backend) -> None:
    a = held(backend, "a")
    with pytest.raises(RunLockedError, match="another process"):
        backend.store("b").take_lease(TTL, never_gone)
    a.take_lease(TTL, never_gone)  # re-entrant for its holder
    assert a.renew_lease(TTL)
    a.commit_levels(first_problem(a), [root()], 0.0)  # the refusal left a's lease in place


def test_an_expired_lease_or_a_gone_holder_is_taken_over(backend: Backend) -> None:
    a = backend.store("a")
    a.take_lease(EXPIRED, never_gone)
    b = held(backend, "b")
    assert not a.renew_lease(TTL) and b.renew_lease(TTL)
    backend.store("c").take_lease(TTL, lambda holder: holder == "b")  # b's process is gone
    assert not b.renew_lease(TTL)


def test_every_write_of_a_store_that_lost_its_lease_is_refused(backend: Backend) -> None:
    old = backend.store("old")
    old.take_lease(EXPIRED, never_gone)
    problem = first_problem(old)
    old.commit_levels(problem, [root()], 0.0)
    new = held(backend, "new")
    writes = [
        old.pending_problems,
        lambda: old.start_problem(problem),
        lambda: old.commit_levels(problem, [level(1, 1)], 0.0),
        lambda: old.finish_problem(problem, 1.0),
        lambda: old.fail_problem(problem, "boom"),
    ]
    for write in writes:
        with pytest.raises(RunLockedError, match="taken over"):
            write()
    assert not old.close(RunStatus.INTERRUPTED, 1.0)
    assert new.start_problem(problem) == root().nodes  # nothing of the refused level
    assert new.status_counts() == {"running": 1, "pending": 2}


def test_a_store_that_never_took_the_lease_cannot_write(backend: Backend) -> None:
    with pytest.raises(RunLockedError):
        backend.store("a").pending_problems()


def test_close_releases_the_lease(backend: Backend) -> None:
    a = held(backend, "a")
    assert a.close(RunStatus.DONE, 2.0)
    assert not a.renew_lease(TTL)
    held(backend, "b")  # free at once, without waiting for the TTL


# ----------------------------------------------------------------------------- problems


def test_pending_problems_come_in_dataset_order(backend: Backend) -> None:
    store = held(backend)
    assert [p.dataset_index for p in store.pending_problems()] == [0, 1, 2]
    assert [p.question for p in store.pending_problems()] == [
        "Question 0?",
        "Question 1?",
        "Question 2?",
    ]


def test_running_and_failed_problems_are_reset_to_pending_by_the_next_holder(
    backend: Backend,
) -> None:
    dead = held(backend, "dead")
    first, second, third = dead.pending_problems()
    dead.start_problem(first.id)
    dead.commit_levels(first.id, [root(), level(1, 1)], 0.0)
    dead.start_problem(second.id)
    dead.fail_problem(second.id, "reward server returned 500")
    dead.start_problem(third.id)
    dead.finish_problem(third.id, 1.0)
    assert dead.status_counts() == {"running": 1, "failed": 1, "done": 1}
    successor = backend.store("successor")
    successor.take_lease(TTL, lambda holder: holder == "dead")
    assert [p.id for p in successor.pending_problems()] == [first.id, second.id]
    assert successor.status_counts() == {"pending": 2, "done": 1}
    # The committed levels of the reset problem stay; the next level follows them.
    assert [n.depth for n in successor.start_problem(first.id)] == [0, 1, 1]
    successor.commit_levels(first.id, [level(2, 2)], 0.0)


def test_finish_and_fail_set_the_status_and_keep_the_levels(backend: Backend) -> None:
    store = held(backend)
    first, second, third = store.pending_problems()
    store.commit_levels(first.id, [root()], 0.0)
    store.finish_problem(first.id, 1.5)
    store.commit_levels(second.id, [root(), level(1, 1)], 0.0)
    store.fail_problem(second.id, "policy server timed out")
    assert store.status_counts() == {"done": 1, "failed": 1, "pending": 1}
    assert len(store.start_problem(second.id)) == 3
    # A failed problem is retried by the next session; a done one is not.
    assert [p.id for p in store.pending_problems()] == [second.id, third.id]


# -------------------------------------------------------------------------------- trees


def test_committed_levels_load_back_equal(backend: Backend) -> None:
    store = held(backend)
    problem = first_problem(store)
    levels = [root(), level(1, 1, per_parent=3), level(2, 3)]
    store.commit_levels(problem, levels[:1], 0.0)
    store.commit_levels(problem, levels[1:], 0.0)  # several levels in one commit
    committed = tuple(n for lvl in levels for n in lvl.nodes)
    assert store.start_problem(problem) == committed
    assert store.start_problem(problem) == committed  # loading again changes nothing


def test_a_failing_commit_writes_none_of_its_levels(backend: Backend) -> None:
    store = held(backend)
    problem = first_problem(store)
    store.commit_levels(problem, [root()], 0.0)
    with pytest.raises(StoreError, match="parent 99"):
        store.commit_levels(problem, [level(1, 1), level(2, 2, bad_parent=True)], 0.0)
    duplicate = level(1, 1)
    duplicate = LevelCommit(1, (duplicate.nodes[0], duplicate.nodes[0]), duplicate.allocations)
    with pytest.raises(StoreError):
        store.commit_levels(problem, [duplicate], 0.0)
    assert store.start_problem(problem) == root().nodes
    store.commit_levels(problem, [level(1, 1)], 0.0)  # the level then commits cleanly
    assert len(store.start_problem(problem)) == 3


def test_a_level_that_does_not_follow_is_refused(backend: Backend) -> None:
    store = held(backend)
    problem = first_problem(store)
    with pytest.raises(StoreError, match="does not follow"):
        store.commit_levels(problem, [level(1, 1)], 0.0)  # no root yet
    store.commit_levels(problem, [root(), level(1, 1)], 0.0)
    with pytest.raises(StoreError, match="does not follow"):
        store.commit_levels(problem, [level(1, 1)], 0.0)  # a replayed level
    with pytest.raises(StoreError, match="does not follow"):
        store.commit_levels(problem, [level(3, 2)], 0.0)  # a skipped level
    assert len(store.start_problem(problem)) == 3
