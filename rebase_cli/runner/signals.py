"""Termination signals treated like Ctrl-C.

`timeout`, Slurm, Docker and Kubernetes stop a job with SIGTERM, a closed terminal sends
SIGHUP; by default either kills Python on the spot, leaving the run `running` under a lease.
Inside `cancel_on_signals` they cancel the current task instead, exactly as asyncio.run does
for SIGINT, so the search takes its Ctrl-C path: stop issuing requests, keep the committed
levels, mark the run interrupted, release the lease.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@dataclass
class Received:
    """The first stop signal received, if any."""

    signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """128 + the signal number, the shell's convention for a process ended by it."""
        return 128 + (self.signum or signal.SIGINT)


@contextmanager
def cancel_on_signals() -> Iterator[Received]:
    """Within the running loop, SIGTERM and SIGHUP cancel the current task once; a repeat while
    the search winds down is ignored so that the run is always closed properly."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received = Received()

    def on_signal(signum: int) -> None:
        if received.signum is None:
            received.signum = signum
            task.cancel()

    installed = []
    for signum in STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except (ValueError, RuntimeError):  # not the main thread: signals stay as they were
            continue
        installed.append(signum)
    try:
        yield received
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


async def finish_despite_cancel(awaitable: Awaitable[object]) -> bool:
    """Await `awaitable` to its end even if the current task is cancelled meanwhile; True when
    it was. For a step that writes in a worker thread (which runs on regardless): its caller
    must know whether it happened, to close what it opened."""
    future = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            await asyncio.shield(future)
            return cancelled
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            cancelled = True
