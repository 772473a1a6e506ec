"""Store access that only tests need: committing levels with no lease (building a database
outside a search) and reading single problems and allocation rows back.

The writes go through `trees.write_levels`, the code the runner's fenced commit runs, so what
they build is what a search would have written."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import select

from rebase_cli.domain import LevelCommit
from rebase_cli.errors import NotFoundError
from rebase_cli.store.database import Database
from rebase_cli.store.models import AllocationRow, ProblemRow
from rebase_cli.store.trees import write_levels


def commit_levels(
    db: Database, problem_id: int, levels: Sequence[LevelCommit], elapsed: float = 0.0
) -> None:
    """`write_levels` in a transaction of its own, with no lease fence."""
    with db.driver_write() as cursor:
        write_levels(cursor, problem_id, levels, elapsed)


def commit_level(db: Database, problem_id: int, level: LevelCommit, elapsed: float = 0.0) -> None:
    """One level, as `commit_levels` writes it."""
    commit_levels(db, problem_id, [level], elapsed)


def get_problem(db: Database, run_id: int, dataset_index: int) -> ProblemRow:
    """The problem row of run `run_id` at `dataset_index`; NotFoundError when there is none."""
    with db.read() as session:
        row = session.exec(
            select(ProblemRow).where(
                ProblemRow.run_id == run_id, ProblemRow.dataset_index == dataset_index
            )
        ).first()
    if row is None:
        raise NotFoundError(f"run-{run_id} has no problem with dataset index {dataset_index}")
    return row


def load_allocations(db: Database, problem_id: int) -> list[AllocationRow]:
    """A problem's allocation rows ordered by (depth, insertion)."""
    with db.read() as session:
        return list(
            session.exec(
                select(AllocationRow)
                .where(AllocationRow.problem_id == problem_id)
                .order_by(AllocationRow.depth, AllocationRow.id)
            ).all()
        )
