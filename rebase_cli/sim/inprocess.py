"""Run a simulator inside the current process, on a background thread and a free port.

Used by `rebase search --policy sim --reward sim`, tests and benchmarks that want a real HTTP
server without a subprocess. The server has its own event loop on its own thread; `stop()`
asks it to exit and waits for the thread.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvicorn

from rebase_cli.domain import Problem
from rebase_cli.errors import ServeError
from rebase_cli.sim.app import create_app
from rebase_cli.sim.config import SimConfig


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted connections of
    # such sockets, and without it Nagle's algorithm holds every response body ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc})",
            "pick another --port, or stop whatever holds this one",
        ) from None
    # Listen now, so that connections made after the "listening" line queue in the backlog
    # until the server loop accepts them instead of being refused.
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: Any, *, loop: str = "auto") -> uvicorn.Config:
    """Lean server settings: no access log, warnings only, the fastest HTTP parser and loop
    installed (httptools/uvloop when present, else h11/asyncio)."""
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http="auto",
        loop=loop,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


@dataclass
class RunningSimulator:
    """A simulator serving on a background thread. Use as a context manager or call stop()."""

    url: str
    config: SimConfig
    app: Any
    _server: uvicorn.Server
    _thread: threading.Thread

    @property
    def sim(self) -> Any:
        """The `Simulator` state behind the app (models, counters)."""
        return self.app.state.sim

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    config: SimConfig,
    *,
    problems: Sequence[Problem] | None = None,
    startup_timeout: float = 30.0,
) -> RunningSimulator:
    """Start a simulator for `config` (its port ignored unless non-zero) and return once it
    accepts connections."""
    app = create_app(config, problems=problems)
    sock = bind_socket(config.host, config.port if config.port else 0)
    host, port = sock.getsockname()[:2]
    # The asyncio loop, not uvloop: this thread is not the main thread of the process.
    server = uvicorn.Server(uvicorn_config(app, loop="asyncio"))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"rebase-sim-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise ServeError("the in-process simulator did not start", "see the log above")
        time.sleep(0.005)
    shown = f"[{host}]" if ":" in host else host
    return RunningSimulator(f"http://{shown}:{port}", config, app, server, thread)
