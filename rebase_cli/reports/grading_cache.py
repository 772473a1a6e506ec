"""Grade (answer, reference) pairs through the database cache.

Each distinct pair is graded once per grader version and dataset: cached verdicts are read
back, the rest go to `rebase_cli.grading.grade_many` in chunks (so a progress bar can move and
an interrupted first report keeps what it graded), and are stored as they come. A read-only
database is still reported on: its new verdicts are then kept in memory only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rebase_cli.errors import ReadOnlyStoreError
from rebase_cli.grading import GRADER_VERSION, grade_many
from rebase_cli.store.database import Database
from rebase_cli.store.grades import AnswerReference, get_grades, put_grades

CHUNK = 512
Progress = Callable[[int, int], None]
"""Called with (pairs graded so far, pairs to grade) while grading."""


@dataclass(frozen=True)
class GradingSummary:
    grader_version: str
    pairs: int
    cached: int
    graded: int
    stored: bool = True
    """False when the database was read-only and new verdicts were not cached."""


def grader_version() -> str:
    return str(GRADER_VERSION)


def grade_pairs(
    db: Database,
    dataset: str,
    pairs: Iterable[AnswerReference],
    progress: Progress | None = None,
) -> tuple[dict[AnswerReference, bool], GradingSummary]:
    """Whether each distinct (answer, reference) pair is correct, and how many were cached."""
    version = grader_version()
    wanted = list(dict.fromkeys(pairs))
    cached = get_grades(db, version, dataset, wanted)
    verdicts = {pair: grade.correct for pair, grade in cached.items()}
    missing = [pair for pair in wanted if pair not in cached]
    stored = True
    for start in range(0, len(missing), CHUNK):
        chunk = missing[start : start + CHUNK]
        graded = grade_many(chunk, dataset)
        if stored:
            stored = _cache(db, version, dataset, chunk, graded)
        for pair, verdict in zip(chunk, graded, strict=True):
            verdicts[pair] = bool(verdict.correct)
        if progress is not None:
            progress(start + len(chunk), len(missing))
    return verdicts, GradingSummary(version, len(wanted), len(cached), len(missing), stored)


def _cache(
    db: Database, version: str, dataset: str, chunk: list[AnswerReference], graded: list
) -> bool:
    """Store a chunk's verdicts; False when the database cannot be written (nothing stored)."""
    try:
        put_grades(
            db,
            version,
            dataset,
            (
                (answer, reference, bool(v.correct), getattr(v, "reason", None))
                for (answer, reference), v in zip(chunk, graded, strict=True)
            ),
        )
    except ReadOnlyStoreError:
        return False
    return True
