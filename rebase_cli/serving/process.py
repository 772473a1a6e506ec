"""Server processes: start one in its own process group with its output in a log file, check
that a recorded pid is still that process, and stop a whole group.

Invariant: a server is started with `start_new_session=True`, so its pid is also its process
group id and every worker it forks (SGLang's scheduler and detokenizer processes) is in that
group. Stopping signals the group, never just the pid, and never a group whose leader is alive
but is not the process that was recorded (a recycled pid).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

import psutil

from rebase_cli.errors import ServeError

# psutil derives create_time from boot time + start ticks (1/100 s); a real clash of pid and
# start time within this window is not a thing on one machine.
_SAME_START_TOLERANCE_S = 1.0
_POLL_S = 0.05
_KILL_WAIT_S = 5.0


@dataclass
class ServerProcess:
    """A server this process started. `popen` lets us reap it and read its exit code."""

    popen: subprocess.Popen[bytes]
    started_at: datetime  # aware UTC, the kernel's start time of the process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        return self.popen.poll()


def start(
    argv: Sequence[str],
    log_path: Path,
    *,
    display_argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start argv in a new session (own process group, no controlling terminal, so Ctrl-C in
    the user's terminal reaches only us), stdout and stderr into `log_path` (truncated; its first
    line is `display_argv`, the redacted command)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        log.write(f"$ {shlex.join(display_argv or argv)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=child_env,
            )
        except OSError as exc:
            raise ServeError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    return ServerProcess(popen=popen, started_at=start_time(popen.pid), log_path=log_path)


def start_time(pid: int) -> datetime:
    """The kernel's start time of `pid` as an aware UTC datetime."""
    return datetime.fromtimestamp(psutil.Process(pid).create_time(), timezone.utc)


def is_same_process(pid: int, started_at: datetime) -> bool:
    """Whether `pid` is alive (not a zombie) and is the process that started at `started_at`."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created = proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    if started_at.tzinfo is None:  # naive values in this code base are UTC
        started_at = started_at.replace(tzinfo=timezone.utc)
    recorded = started_at.timestamp()
    return abs(created - recorded) <= _SAME_START_TOLERANCE_S


def pid_exists(pid: int) -> bool:
    """True when `pid` is a live (non-zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# Seconds `rebase serve stop` waits between SIGTERM and SIGKILL unless told otherwise.
DEFAULT_GRACE_S = 10.0


class StopOutcome(str, Enum):
    TERMINATED = "terminated"  # exited after SIGTERM within the grace period
    KILLED = "killed"  # needed SIGKILL
    GONE = "gone"  # nothing of the group was running


def stop_group(
    pgid: int, *, grace: float, popen: subprocess.Popen[bytes] | None = None
) -> StopOutcome:
    """SIGTERM the process group `pgid`, wait up to `grace` seconds for every member to exit,
    then SIGKILL what is left. Reaps the leader when it is our child (no zombie stays behind).

    The caller must have checked that the group is ours (`is_same_process` on the leader, or the
    leader is gone, in which case the kernel keeps `pgid` from being reused while any member of
    the old group lives)."""
    if not _signal_group(pgid, signal.SIGTERM):
        reap(pgid, popen)
        return StopOutcome.GONE
    if _wait_group(pgid, grace, popen):
        return StopOutcome.TERMINATED
    _signal_group(pgid, signal.SIGKILL)
    if _wait_group(pgid, _KILL_WAIT_S, popen):
        return StopOutcome.KILLED
    raise ServeError(f"process group {pgid} survived SIGKILL", "check it with `ps -g {pgid}`")


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies still count for killpg(0); only live members matter (a zombie whose parent is not
    # us waits for its parent or init to reap it).
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait_group(pgid: int, timeout: float, popen: subprocess.Popen[bytes] | None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not group_alive(pgid):
            reap(pgid, popen)  # the leader may have died as a zombie of ours since the last look
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def reap(pid: int, popen: subprocess.Popen[bytes] | None = None) -> None:
    """Collect the exit status of the leader if it is our child (a `--detach` server started
    by this same Python process, as in tests); a no-op for anyone else's child."""
    if popen is not None:
        popen.poll()
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
