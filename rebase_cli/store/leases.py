"""A run's lease: who may search it, for how long, and the fence every write of a search
checks. Each function is one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update
from sqlmodel import col

from rebase_cli.domain import RunStatus
from rebase_cli.errors import NotFoundError, RunLockedError
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run, utcnow


@dataclass(frozen=True)
class Lease:
    """An unexpired lease on a run."""

    owner: str
    seconds_left: int


def lease_held_error(run_id: int, lease: Lease, doing: str | None = None) -> RunLockedError:
    """The refusal when another process holds the run's lease; `doing` (e.g. "delete") names
    what was refused."""
    prefix = f"cannot {doing}: " if doing else ""
    return RunLockedError(
        f"{prefix}run-{run_id} is being searched by another process ({lease.owner})",
        "wait for it to finish or stop it (Ctrl-C, or `kill PID` where it runs); if it was "
        f"killed on another host, retry in {lease.seconds_left}s when its lease expires",
    )


def live_lease(db: Database, run_id: int) -> Lease | None:
    """The run's lease if one is held and has not expired (None for a missing run)."""
    now = utcnow()
    with db.read() as session:
        run = session.get(Run, run_id)
    if run is None or run.lease_owner is None or run.lease_expires_at is None:
        return None
    if run.lease_expires_at <= now:
        return None
    return Lease(run.lease_owner, int((run.lease_expires_at - now).total_seconds()) + 1)


def acquire_lease(
    db: Database,
    run_id: int,
    owner: str,
    ttl: timedelta,
    holder_is_gone: Callable[[str], bool] = lambda holder: False,
) -> None:
    """Take the run's lease unless another owner holds one that has not expired.

    A process that dies leaves its lease behind; it expires `ttl` after the last heartbeat and is
    then taken over, or at once when `holder_is_gone(holder)` knows the holder no longer exists.
    A refusal changes nothing."""
    now = utcnow()
    with db.write() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run run-{run_id}", "list runs with `rebase runs`")
        held = run.lease_owner not in (None, owner) and (
            run.lease_expires_at is not None and run.lease_expires_at > now
        )
        if held and not holder_is_gone(run.lease_owner or ""):
            left = int((run.lease_expires_at - now).total_seconds()) + 1
            raise lease_held_error(run_id, Lease(run.lease_owner or "", left))
        run.lease_owner = owner
        run.lease_expires_at = now + ttl
        run.status = RunStatus.RUNNING.value
        run.updated_at = now
        session.add(run)


def renew_lease(db: Database, run_id: int, owner: str, ttl: timedelta) -> bool:
    """Extend our lease; False if another owner took it over meanwhile."""
    with db.write() as session:
        result = session.exec(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.lease_owner) == owner)
            .values(lease_expires_at=utcnow() + ttl)
        )
        return result.rowcount == 1


def close_run(
    db: Database, run_id: int, owner: str, status: RunStatus, *, wall_seconds: float = 0.0
) -> bool:
    """Set the final status, add `wall_seconds` and release the lease, if `owner` still holds
    it; False (and nothing changed) if another process took the run over meanwhile, whose
    status is then not ours to set."""
    with db.write() as session:
        result = session.exec(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.lease_owner) == owner)
            .values(
                status=status.value,
                updated_at=utcnow(),
                wall_seconds=Run.wall_seconds + wall_seconds,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return result.rowcount == 1


def lease_lost_error(run_id: int) -> RunLockedError:
    """The refusal of a write by a process that no longer holds the run's lease."""
    return RunLockedError(
        f"run-{run_id} was taken over by another process", "let that process finish"
    )


def check_fence(cursor: sqlite3.Cursor, run_id: int, owner: str) -> None:
    """Raise RunLockedError unless `owner` holds the run's lease, read inside the caller's
    write transaction (which holds the write lock, so no takeover can slip in before its
    commit).

    Why: a holder that stalls past its lease (SIGSTOP, a suspended machine) loses the run to
    another process; when it wakes it still has levels in flight. Without this fence it could
    commit one of them first, and the new holder's commit of the same level would then be
    refused as out of order, failing its whole run."""
    row = cursor.execute("SELECT lease_owner FROM run WHERE id = ?", (run_id,)).fetchone()
    if row is None or row[0] != owner:
        raise lease_lost_error(run_id)
