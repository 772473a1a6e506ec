"""Who holds a run's lease, and whether that holder is a process of this host that is gone.

A lease owner id is `host:pid:start:random`, where `start` is the kernel's start time of the
process (seconds since the epoch). A holder on this host whose pid no longer names the process
that started at `start` (it exited, was SIGKILLed, or the pid was reused) cannot be searching
any more, so its lease is taken over at once instead of waiting for it to expire. A holder on
another host, or an id without a start time, is trusted until its lease expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timezone

from rebase_cli.serving.process import is_same_process, start_time
from rebase_cli.store import leases
from rebase_cli.store.database import Database


def lease_owner() -> str:
    """An id for this process: host, pid, its start time and a random part."""
    started = start_time(os.getpid()).timestamp()
    return f"{socket.gethostname()}:{os.getpid()}:{started:.2f}:{uuid.uuid4().hex[:8]}"


def holder_is_gone(owner: str) -> bool:
    """True only when `owner` names a process of this host that no longer exists."""
    parts = owner.rsplit(":", 3)
    if len(parts) != 4:
        return False
    host, pid, started, _ = parts
    if host != socket.gethostname():
        return False
    try:
        pid_number = int(pid)
        started_at = datetime.fromtimestamp(float(started), timezone.utc)
    except (ValueError, OverflowError, OSError):
        return False
    if pid_number == os.getpid():
        return False
    return not is_same_process(pid_number, started_at)


def refuse_if_searched(db: Database, run_id: int, doing: str) -> None:
    """RunLockedError when a live process holds the run's lease; writes nothing.

    `doing` names what is refused (`resume`, `delete`)."""
    lease = leases.live_lease(db, run_id)
    if lease is None or holder_is_gone(lease.owner):
        return
    raise leases.lease_held_error(run_id, lease, None if doing == "resume" else doing)
