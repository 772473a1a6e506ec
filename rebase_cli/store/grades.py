"""The grade cache: verdicts of one grader version on (answer, reference) pairs of a dataset.

Rows live in the `grade` table, unique on (grader_version, dataset, reference, answer). A new
grader version never sees an old version's verdicts, so changing the grader invalidates the cache
without deleting anything. `get_grades` and `put_grades` are one transaction each and talk to
SQLite through the driver cursor: a report looks up tens of thousands of pairs, and building an
ORM object per row would cost more than the lookups themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rebase_cli.store.database import Database

AnswerReference = tuple[str, str]
"""A cache key within one grader version and dataset: (answer, reference)."""

_SELECT = (
    "SELECT correct, reason FROM grade "
    "WHERE grader_version = ? AND dataset = ? AND reference = ? AND answer = ?"
)
# OR IGNORE: two reports grading the same pairs at once both try to insert; the verdicts are the
# same (same grader version), so the first one wins and the second is a no-op.
_INSERT = (
    "INSERT OR IGNORE INTO grade (grader_version, dataset, reference, answer, correct, reason) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class CachedGrade:
    """A stored verdict."""

    correct: bool
    reason: str | None


def get_grades(
    db: Database, grader_version: str, dataset: str, pairs: Iterable[AnswerReference]
) -> dict[AnswerReference, CachedGrade]:
    """The cached verdicts among `pairs`; pairs never graded by this version are absent."""
    found: dict[AnswerReference, CachedGrade] = {}
    with db.driver_read() as cursor:
        for answer, reference in pairs:
            # One indexed lookup per pair (the unique index covers the WHERE clause): tens of
            # thousands take well under a second, with no temporary tables to manage.
            row = cursor.execute(_SELECT, (grader_version, dataset, reference, answer))
            hit = row.fetchone()
            if hit is not None:
                found[(answer, reference)] = CachedGrade(bool(hit[0]), hit[1])
    return found


def put_grades(
    db: Database,
    grader_version: str,
    dataset: str,
    verdicts: Iterable[tuple[str, str, bool, str | None]],
) -> int:
    """Store (answer, reference, correct, reason) verdicts; returns how many rows were new."""
    rows = [
        (grader_version, dataset, reference, answer, bool(correct), reason)
        for answer, reference, correct, reason in verdicts
    ]
    if not rows:
        return 0
    with db.driver_write() as cursor:
        before = cursor.connection.total_changes
        cursor.executemany(_INSERT, rows)
        return cursor.connection.total_changes - before


def count_grades(db: Database, grader_version: str | None = None) -> int:
    """How many verdicts are cached (for one grader version, or all)."""
    with db.driver_read() as cursor:
        if grader_version is None:
            return cursor.execute("SELECT count(*) FROM grade").fetchone()[0]
        return cursor.execute(
            "SELECT count(*) FROM grade WHERE grader_version = ?", (grader_version,)
        ).fetchone()[0]
