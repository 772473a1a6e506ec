"""Bounded-time execution of sympy-backed grading, from any thread.

sympy can run for minutes on an innocent-looking answer (`9^{9^{9^9}}`), and math-verify bounds
that with SIGALRM, which Python only allows in the main thread. The rules here:

- In the main thread, `deadline(seconds)` arms our own timer (math-verify's are switched off)
  and raises `GradingTimeout`, a BaseException, so that library `except Exception` blocks can
  not swallow it. A timer that was already armed (pytest-timeout, a caller's alarm) is restored
  afterwards with the time it had left.
- In any other thread, the work goes to a few worker processes (`python -m
  rebase_cli.grading.worker`, one JSON line per request and per reply), each of which grades in
  its own main thread under `deadline`. Plain subprocesses rather than multiprocessing: nothing
  re-imports the caller's `__main__`, so any script or `python -m` entry point is safe. The
  caller waits at most a backstop time per request; a worker that misses it (a hang even the
  signal could not interrupt, or a crash) is killed and replaced on demand.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT_S = 5.0
# Time a fresh worker may take to start and import sympy, on a busy machine.
WORKER_STARTUP_S = 60.0
MAX_WORKERS = 4
WORKER_COMMAND = (sys.executable, "-m", "rebase_cli.grading.worker")
READY = "ready"


class GradingTimeout(BaseException):
    """A grading step ran past its deadline."""


class WorkerUnavailable(Exception):
    """A grading worker did not answer in time, or died; it has been killed."""


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise `GradingTimeout` in the body once `seconds` have passed. Main thread only."""

    def _expire(signum: int, frame: Any) -> None:
        raise GradingTimeout(f"over {seconds:g}s")

    previous_handler = signal.signal(signal.SIGALRM, _expire)
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None means a handler installed outside Python; the default is the closest we can do.
        signal.signal(
            signal.SIGALRM, signal.SIG_DFL if previous_handler is None else previous_handler
        )
        if previous_delay > 0:
            # Give an outer timer back the time it had left (at least a moment, so that one
            # which came due meanwhile still fires).
            left = max(previous_delay - (time.monotonic() - started), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)


class _Worker:
    """One worker process and the unread part of its output. Used by one thread at a time."""

    def __init__(self) -> None:
        try:
            self.process = subprocess.Popen(
                list(WORKER_COMMAND),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=_worker_environment(),
                # Ctrl-C in a terminal goes to the parent, which stops the workers itself.
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkerUnavailable(f"cannot start a grading worker ({exc})") from None
        self._buffer = b""
        try:
            if json.loads(self._read_line(WORKER_STARTUP_S)) != READY:
                raise WorkerUnavailable("a grading worker started wrongly")
        except (WorkerUnavailable, ValueError):
            self.kill()
            raise

    def request(self, payload: Any, timeout_s: float) -> Any:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(payload).encode() + b"\n")
            self.process.stdin.flush()
        except OSError:
            raise WorkerUnavailable("a grading worker exited") from None
        try:
            return json.loads(self._read_line(timeout_s))
        except ValueError:
            raise WorkerUnavailable("a grading worker sent a garbled reply") from None

    def _read_line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        give_up = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = give_up - time.monotonic()
            if left <= 0:
                raise WorkerUnavailable(f"no answer from a grading worker in {timeout_s:g}s")
            readable, _, _ = select.select([descriptor], [], [], left)
            if readable:
                chunk = os.read(descriptor, 1 << 16)
                if not chunk:
                    raise WorkerUnavailable("a grading worker exited")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _worker_environment() -> dict[str, str]:
    # The worker must import this very package, even when the caller put it on sys.path by hand.
    package_parent = str(Path(__file__).resolve().parents[2])
    inherited = os.environ.get("PYTHONPATH")
    env = dict(os.environ)
    env["PYTHONPATH"] = package_parent + (os.pathsep + inherited if inherited else "")
    return env


# Slots for up to MAX_WORKERS workers: None is a slot whose worker is not started (yet, or
# again after a kill). A thread owns a worker while it holds its slot.
WORKERS = max(1, min(MAX_WORKERS, os.cpu_count() or 1))
_slots: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
for _ in range(WORKERS):
    _slots.put(None)


def run_in_worker(payload: Any, *, timeout_s: float) -> Any:
    """Send one JSON request to a worker process and return its JSON reply.

    Blocks while all workers are busy. Raises `WorkerUnavailable` when the worker cannot be
    started, does not reply within `timeout_s`, or dies; that worker is then killed.
    """
    worker = _slots.get()
    try:
        if worker is None:
            worker = _Worker()
        return worker.request(payload, timeout_s)
    except WorkerUnavailable:
        if worker is not None:
            worker.kill()
            worker = None
        raise
    finally:
        _slots.put(worker)


def shutdown_workers() -> None:
    """Stop every worker process that is not in use (they restart on demand)."""
    held = []
    while True:
        try:
            held.append(_slots.get_nowait())
        except queue.Empty:
            break
    for worker in held:
        if worker is not None:
            worker.kill()
        _slots.put(None)


atexit.register(shutdown_workers)
