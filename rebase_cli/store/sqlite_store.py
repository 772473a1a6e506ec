"""SearchStore over the SQLite database: fenced writes through the driver cursor."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta

from rebase_cli.domain import LevelCommit, NewNode, ProblemRecord, RunStatus
from rebase_cli.store import leases, problems, trees
from rebase_cli.store.database import Database


class SqliteSearchStore:
    """The SearchStore of run `run_id` in `db` for lease owner `owner`. Every write opens
    one transaction whose first statement is the lease fence (`leases.check_fence`)."""

    def __init__(self, db: Database, run_id: int, owner: str) -> None:
        self.db = db
        self.run_id = run_id
        self.owner = owner

    @contextmanager
    def _fenced(self) -> Iterator[sqlite3.Cursor]:
        with self.db.driver_write() as cursor:
            leases.check_fence(cursor, self.run_id, self.owner)
            yield cursor

    def take_lease(self, ttl: timedelta, holder_is_gone: Callable[[str], bool]) -> None:
        leases.acquire_lease(self.db, self.run_id, self.owner, ttl, holder_is_gone)

    def renew_lease(self, ttl: timedelta) -> bool:
        return leases.renew_lease(self.db, self.run_id, self.owner, ttl)

    def close(self, status: RunStatus, wall_seconds: float) -> bool:
        return leases.close_run(self.db, self.run_id, self.owner, status, wall_seconds=wall_seconds)

    def pending_problems(self) -> list[ProblemRecord]:
        with self._fenced() as cursor:
            problems.reset_unfinished(cursor, self.run_id)
            return problems.pending_records(cursor, self.run_id)

    def start_problem(self, problem_id: int) -> tuple[NewNode, ...]:
        with self._fenced() as cursor:
            problems.mark_running(cursor, problem_id)
            return trees.read_nodes(cursor, problem_id)

    def commit_levels(self, problem_id: int, levels: Sequence[LevelCommit], elapsed: float) -> None:
        with self._fenced() as cursor:
            trees.write_levels(cursor, problem_id, levels, elapsed)

    def finish_problem(self, problem_id: int, elapsed: float) -> None:
        with self._fenced() as cursor:
            problems.mark_done(cursor, problem_id, elapsed)

    def fail_problem(self, problem_id: int, error: str) -> None:
        with self._fenced() as cursor:
            problems.mark_failed(cursor, problem_id, error)

    def status_counts(self) -> Mapping[str, int]:
        with self.db.driver_read() as cursor:
            return problems.status_counts(cursor, self.run_id)
