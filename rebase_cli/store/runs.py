"""Runs: create, find, record capabilities, delete. Each function is one transaction."""

from __future__ import annotations

import json
import re

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from rebase_cli.domain import RunStatus
from rebase_cli.errors import NotFoundError, StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run

_RUN_REF = re.compile(r"^(?:run-)?(\d+)$")


def create_run(db: Database, run: Run) -> Run:
    """Insert a run; a duplicate name is a StoreError naming the clash."""
    with db.write() as session:
        if run.name is not None:
            clash = session.exec(select(Run).where(Run.name == run.name)).first()
            if clash is not None:
                raise StoreError(
                    f"a run named {run.name!r} already exists (run-{clash.id})",
                    "choose another --name, or resume it with --run " + f"run-{clash.id}",
                )
        session.add(run)
        session.flush()
        session.refresh(run)
        return run


def looks_like_run_id(ref: str) -> bool:
    """`run-42` or `42`: what `resolve_run` reads as an id first."""
    return _RUN_REF.match(ref.strip()) is not None


def resolve_run(db: Database, ref: str) -> Run:
    """The run named by `run-42`, `42` (an id first, then a name), a name, or `latest`;
    NotFoundError names the database otherwise."""
    with db.read() as session:
        return _resolve_run(session, ref)


def _resolve_run(session: Session, ref: str) -> Run:
    ref = ref.strip()
    run: Run | None
    if ref == "latest":
        run = session.exec(select(Run).order_by(col(Run.id).desc())).first()
    elif match := _RUN_REF.match(ref):
        run = session.get(Run, int(match.group(1)))
        if run is None:
            run = session.exec(select(Run).where(Run.name == ref)).first()
    else:
        run = session.exec(select(Run).where(Run.name == ref)).first()
    if run is None:
        raise NotFoundError(
            f"no run {ref!r} in {_db_name(session)}", "list runs with `rebase runs`"
        )
    return run


def _db_name(session: Session) -> str:
    bind = session.get_bind()
    return str(getattr(bind, "url", "the database")).removeprefix("sqlite:///")


def find_resumable(db: Database, fingerprint: str) -> Run | None:
    """The newest run with this fingerprint that is not done."""
    with db.read() as session:
        return session.exec(
            select(Run)
            .where(Run.fingerprint == fingerprint, Run.status != RunStatus.DONE.value)
            .order_by(col(Run.id).desc())
        ).first()


def find_finished(db: Database, fingerprint: str) -> Run | None:
    """The newest run with this fingerprint that is done."""
    with db.read() as session:
        return session.exec(
            select(Run)
            .where(Run.fingerprint == fingerprint, Run.status == RunStatus.DONE.value)
            .order_by(col(Run.id).desc())
        ).first()


def set_run_capabilities(db: Database, run_id: int, capabilities: dict) -> None:
    """Record what the servers of a run support (n>1, matched_stop, the pre-run check, ...):
    the keys given replace those stored, other stored keys stay."""
    with db.write() as session:
        stored = session.exec(select(Run.capabilities_json).where(col(Run.id) == run_id)).first()
        merged = {**(json.loads(stored) if stored else {}), **capabilities}
        session.exec(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(capabilities_json=json.dumps(merged, sort_keys=True))
        )


def delete_run(db: Database, run_id: int) -> None:
    """Delete a run and everything under it (foreign keys cascade)."""
    with db.write() as session:
        deleted = session.exec(delete(Run).where(col(Run.id) == run_id))
        if deleted.rowcount == 0:
            raise NotFoundError(f"no run run-{run_id}", "list runs with `rebase runs`")
