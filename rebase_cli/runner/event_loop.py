"""The event loop the commands run their searches and checks on.

uvloop (libuv) where it is installed, as it is with this package on Linux and macOS: its loop
and socket transports take a good part less CPU per request than asyncio's own, and a fast
policy server makes the orchestrator's CPU the limit (benchmarks/bench_orchestrator.py).
Elsewhere, asyncio's loop. Either way Ctrl-C cancels the main task, as `asyncio.run` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop (uvloop's when available) and close it."""
    try:
        import uvloop
    except ImportError:  # Windows: uvloop does not exist there
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
