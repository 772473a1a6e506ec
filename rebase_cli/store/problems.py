"""The problems of a run: adding and listing them (ORM), and the status changes of a search,
written with the driver cursor of the caller's transaction so that a store can put its lease
fence in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from sqlmodel import select

from rebase_cli.domain import Problem, ProblemRecord, ProblemStatus
from rebase_cli.store.database import Database
from rebase_cli.store.models import ProblemRow, stored_now


def add_problems(db: Database, run_id: int, problems: Iterable[Problem]) -> int:
    """Insert the run's problems that are not there yet (by dataset index); returns how many."""
    with db.write() as session:
        existing = set(
            session.exec(select(ProblemRow.dataset_index).where(ProblemRow.run_id == run_id)).all()
        )
        added = 0
        for problem in problems:
            if problem.index in existing:
                continue
            session.add(
                ProblemRow(
                    run_id=run_id,
                    dataset_index=problem.index,
                    source_id=problem.source_id,
                    question=problem.question,
                    reference_answer=problem.reference_answer,
                    subject=problem.subject,
                    level=problem.level,
                )
            )
            added += 1
        return added


def problems_of_run(db: Database, run_id: int) -> list[ProblemRow]:
    """The run's problems in dataset order."""
    with db.read() as session:
        query = select(ProblemRow).where(ProblemRow.run_id == run_id)
        return list(session.exec(query.order_by(ProblemRow.dataset_index)).all())


def pending_records(cursor: sqlite3.Cursor, run_id: int) -> list[ProblemRecord]:
    """The run's pending problems in dataset order."""
    rows = cursor.execute(
        "SELECT id, dataset_index, question FROM problem WHERE run_id = ? AND status = ? "
        "ORDER BY dataset_index",
        (run_id, ProblemStatus.PENDING.value),
    ).fetchall()
    return [ProblemRecord(id=row[0], dataset_index=row[1], question=row[2]) for row in rows]


def status_counts(cursor: sqlite3.Cursor, run_id: int) -> dict[str, int]:
    """How many of the run's problems have each status (statuses with none are left out)."""
    return dict(
        cursor.execute(
            "SELECT status, count(*) FROM problem WHERE run_id = ? GROUP BY status", (run_id,)
        ).fetchall()
    )


def reset_unfinished(cursor: sqlite3.Cursor, run_id: int) -> None:
    """Set problems left `running` by a dead process back to pending (their committed levels
    stay; the next level is redone) and clear failures so a resume retries them."""
    cursor.execute(
        "UPDATE problem SET status = ?, error = NULL WHERE run_id = ? AND status IN (?, ?)",
        (
            ProblemStatus.PENDING.value,
            run_id,
            ProblemStatus.RUNNING.value,
            ProblemStatus.FAILED.value,
        ),
    )


def mark_running(cursor: sqlite3.Cursor, problem_id: int) -> None:
    """Mark a problem running; its first start time stays."""
    cursor.execute(
        "UPDATE problem SET status = ?, started_at = coalesce(started_at, ?) WHERE id = ?",
        (ProblemStatus.RUNNING.value, stored_now(), problem_id),
    )


def mark_failed(cursor: sqlite3.Cursor, problem_id: int, error: str) -> None:
    """Mark a problem failed with its error; its committed levels stay."""
    cursor.execute(
        "UPDATE problem SET status = ?, error = ?, finished_at = ? WHERE id = ?",
        (ProblemStatus.FAILED.value, error, stored_now(), problem_id),
    )


def mark_done(cursor: sqlite3.Cursor, problem_id: int, elapsed: float = 0.0) -> None:
    """Mark a problem done after its search stopped (no more levels to commit)."""
    cursor.execute(
        "UPDATE problem SET status = ?, error = NULL, finished_at = ?, "
        "elapsed_seconds = elapsed_seconds + ? WHERE id = ?",
        (ProblemStatus.DONE.value, stored_now(), elapsed, problem_id),
    )
