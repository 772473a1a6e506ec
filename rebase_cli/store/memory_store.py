"""SearchStore in plain dicts: the same contract as the SQLite store, no database.

`MemoryRun` is the shared state (what the database file is to SqliteSearchStore); each
`InMemorySearchStore` is one lease owner's view of it, so several owners can contend for one
run. A lock serialises the operations, the way SQLite's write lock does."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rebase_cli.domain import (
    LevelCommit,
    LevelCounters,
    NewNode,
    Problem,
    ProblemRecord,
    ProblemStatus,
    RunStatus,
)
from rebase_cli.errors import NotFoundError, StoreError
from rebase_cli.store.leases import Lease, lease_held_error, lease_lost_error
from rebase_cli.store.models import utcnow
from rebase_cli.store.trees import add_counters, check_follows, check_parents


@dataclass
class MemoryProblem:
    """A problem's stored state; `nodes` and `allocations` in commit order."""

    record: ProblemRecord
    status: str = ProblemStatus.PENDING.value
    error: str | None = None
    depth_completed: int = -1
    counters: LevelCounters = field(default_factory=LevelCounters)
    elapsed_seconds: float = 0.0
    nodes: list[NewNode] = field(default_factory=list)
    allocations: list[tuple[int, int, float, int, int | None]] = field(default_factory=list)


class MemoryRun:
    """One run's problems, trees, status and lease, held in memory."""

    def __init__(self, problems: Iterable[Problem], run_id: int = 1) -> None:
        self.run_id = run_id
        self.problems: dict[int, MemoryProblem] = {
            problem_id: MemoryProblem(ProblemRecord(problem_id, p.index, p.question))
            for problem_id, p in enumerate(sorted(problems, key=lambda p: p.index), start=1)
        }
        self.status = RunStatus.RUNNING.value
        self.wall_seconds = 0.0
        self.lease_owner: str | None = None
        self.lease_expires_at: datetime | None = None
        self.lock = threading.Lock()


class InMemorySearchStore:
    """The SearchStore of `run` for lease owner `owner` (contract: store/search_store.py)."""

    def __init__(self, run: MemoryRun, owner: str) -> None:
        self.run = run
        self.run_id = run.run_id
        self.owner = owner

    def _fence(self) -> None:
        if self.run.lease_owner != self.owner:
            raise lease_lost_error(self.run_id)

    def _problem(self, problem_id: int) -> MemoryProblem:
        try:
            return self.run.problems[problem_id]
        except KeyError:
            raise NotFoundError(f"no problem with id {problem_id}") from None

    def take_lease(self, ttl: timedelta, holder_is_gone: Callable[[str], bool]) -> None:
        now = utcnow()
        with self.run.lock:
            run = self.run
            held = run.lease_owner not in (None, self.owner) and (
                run.lease_expires_at is not None and run.lease_expires_at > now
            )
            if held and not holder_is_gone(run.lease_owner or ""):
                assert run.lease_expires_at is not None
                left = int((run.lease_expires_at - now).total_seconds()) + 1
                raise lease_held_error(self.run_id, Lease(run.lease_owner or "", left))
            run.lease_owner = self.owner
            run.lease_expires_at = now + ttl
            run.status = RunStatus.RUNNING.value

    def renew_lease(self, ttl: timedelta) -> bool:
        with self.run.lock:
            if self.run.lease_owner != self.owner:
                return False
            self.run.lease_expires_at = utcnow() + ttl
            return True

    def close(self, status: RunStatus, wall_seconds: float) -> bool:
        with self.run.lock:
            if self.run.lease_owner != self.owner:
                return False
            self.run.status = status.value
            self.run.wall_seconds += wall_seconds
            self.run.lease_owner = None
            self.run.lease_expires_at = None
            return True

    def pending_problems(self) -> list[ProblemRecord]:
        with self.run.lock:
            self._fence()
            unfinished = (ProblemStatus.RUNNING.value, ProblemStatus.FAILED.value)
            for problem in self.run.problems.values():
                if problem.status in unfinished:
                    problem.status = ProblemStatus.PENDING.value
                    problem.error = None
            pending = [
                p.record
                for p in self.run.problems.values()
                if p.status == ProblemStatus.PENDING.value
            ]
            return sorted(pending, key=lambda record: record.dataset_index)

    def start_problem(self, problem_id: int) -> tuple[NewNode, ...]:
        with self.run.lock:
            self._fence()
            problem = self._problem(problem_id)
            problem.status = ProblemStatus.RUNNING.value
            return tuple(sorted(problem.nodes, key=lambda node: (node.depth, node.ordinal)))

    def commit_levels(self, problem_id: int, levels: Sequence[LevelCommit], elapsed: float) -> None:
        with self.run.lock:
            self._fence()
            problem = self._problem(problem_id)
            # Everything is checked before anything is changed: all levels or none.
            nodes, allocations = self._checked(problem, levels)
            if not levels:
                return
            problem.nodes.extend(nodes)
            problem.allocations.extend(allocations)
            for level in levels:
                problem.counters = add_counters(problem.counters, level.counters)
            problem.depth_completed = levels[-1].depth
            problem.elapsed_seconds += elapsed

    def _checked(
        self, problem: MemoryProblem, levels: Sequence[LevelCommit]
    ) -> tuple[list[NewNode], list[tuple[int, int, float, int, int | None]]]:
        """The nodes and allocation rows `levels` add, or StoreError where the SQLite store
        refuses them (a level out of order, an unknown parent, a duplicate position)."""
        completed = problem.depth_completed
        ordinals = {(node.depth, node.ordinal) for node in problem.nodes}
        nodes: list[NewNode] = []
        allocations: list[tuple[int, int, float, int, int | None]] = []
        pid = problem.record.id
        for level in levels:
            check_follows(pid, level, completed)
            parents = {ordinal for depth, ordinal in ordinals if depth == level.depth - 1}
            check_parents(pid, level, parents)
            for parent_ordinal, weight, children, *subtree in level.allocations:
                allocations.append(
                    (
                        level.depth - 1,
                        parent_ordinal,
                        weight,
                        children,
                        subtree[0] if subtree else None,
                    )
                )
            for node in level.nodes:
                if (node.depth, node.ordinal) in ordinals:
                    raise StoreError(
                        f"problem {pid} already has a node at depth {node.depth}, "
                        f"ordinal {node.ordinal}"
                    )
                ordinals.add((node.depth, node.ordinal))
                nodes.append(node)
            completed = level.depth
        return nodes, allocations

    def finish_problem(self, problem_id: int, elapsed: float) -> None:
        with self.run.lock:
            self._fence()
            problem = self._problem(problem_id)
            problem.status = ProblemStatus.DONE.value
            problem.error = None
            problem.elapsed_seconds += elapsed

    def fail_problem(self, problem_id: int, error: str) -> None:
        with self.run.lock:
            self._fence()
            problem = self._problem(problem_id)
            problem.status = ProblemStatus.FAILED.value
            problem.error = error

    def status_counts(self) -> Mapping[str, int]:
        with self.run.lock:
            return dict(Counter(p.status for p in self.run.problems.values()))
