"""The flows behind `rebase serve policy|reward`: start a server, wait until it is ready,
register it, and (in the foreground) stream its log until it exits or we are interrupted.

Invariant: whatever ends a start-up or a foreground session (readiness failure, Ctrl-C,
SIGTERM, a bug) stops the server's whole process group and removes its row; only a server
that became ready under `--detach` outlives the call.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from rebase_cli.serving import health, launchers, net, process
from rebase_cli.serving.health import StartupError
from rebase_cli.serving.launchers import ServeSpec
from rebase_cli.serving.logs import LogFollower, follow, tail_lines
from rebase_cli.serving.process import ServerProcess
from rebase_cli.store import servers
from rebase_cli.store.database import Database
from rebase_cli.store.models import ServerRow

#: Clients (`rebase search`) read the key of a registered server from this variable; the key
#: itself is never stored.
API_KEY_ENV = "REBASE_API_KEY"
LOG_TAIL_LINES = 20
STOP_GRACE_S = 10.0


@dataclass
class StartedServer:
    row: ServerRow
    process: ServerProcess
    spec: ServeSpec
    ready_seconds: float
    follower: LogFollower | None = None

    @property
    def url(self) -> str:
        return self.row.url


def log_dir_for(db_path: Path) -> Path:
    """Server logs live next to the database: `rebase.db` → `rebase.db.logs/`."""
    return db_path.parent / f"{db_path.name}.logs"


def start_server(
    db: Database,
    spec: ServeSpec,
    *,
    log_dir: Path,
    timeout: float | None = None,
    on_progress: Callable[[str, float], None] | None = None,
    on_log: Callable[[str], None] | None = None,
    launcher: launchers.Launcher | None = None,
) -> StartedServer:
    """Check, start, register and wait for a server; return it once /health answers 200.

    `on_progress(phase, elapsed)` sees every readiness probe; `on_log(text)` (foreground) gets
    the server's log as it is written. On failure the error carries the log tail."""
    launcher = launcher or launchers.get_launcher(spec.engine)
    launchers.validate(spec, launcher)
    launcher.preflight(spec)
    spec = replace(spec, port=net.resolve_port(spec.role, spec.host, spec.port))
    argv = launcher.command(spec)
    shown = launchers.redact(argv)
    url = net.base_url(spec.host, spec.port)
    log_path = log_dir / f"{spec.role}-{spec.port}.log"

    proc = process.start(argv, log_path, display_argv=shown, env=launcher.env(spec))
    follower = LogFollower(log_path) if on_log is not None else None
    try:
        row = servers.add_server(
            db,
            ServerRow(
                role=spec.role,
                engine=launcher.name,
                model=spec.client_model,
                url=url,
                host=spec.host,
                port=spec.port,
                pid=proc.pid,
                command_json=json.dumps(shown),
                log_path=str(log_path.resolve()),
                api_key_env=API_KEY_ENV if spec.api_key else None,
                status="starting",
                started_at=proc.started_at,
            ),
        )
    except BaseException:
        process.stop_group(proc.pid, grace=STOP_GRACE_S, popen=proc.popen)
        raise

    def progress(phase: str, elapsed: float) -> None:
        if follower is not None and on_log is not None and (text := follower.read_new()):
            on_log(text)
        if on_progress is not None:
            on_progress(phase, elapsed)

    try:
        ready = health.wait_until_healthy(
            url,
            timeout=timeout if timeout is not None else launcher.default_timeout,
            exit_code=proc.exit_code,
            what=f"{spec.role} server ({launcher.name})",
            api_key=spec.api_key,
            on_progress=progress,
        )
        model = spec.client_model or health.served_model_id(url, api_key=spec.api_key)
        row = servers.update_server(db, row.id or 0, status="running", model=model)
    except BaseException as exc:
        process.stop_group(proc.pid, grace=STOP_GRACE_S, popen=proc.popen)
        servers.delete_server(db, row.id or 0)
        if isinstance(exc, StartupError):
            exc.log_path = log_path
            exc.log_tail = [] if follower is not None else tail_lines(log_path, LOG_TAIL_LINES)
        if follower is not None and on_log is not None and (text := follower.flush()):
            on_log(text)
        raise
    return StartedServer(row=row, process=proc, spec=spec, ready_seconds=ready, follower=follower)


def supervise(
    db: Database,
    server: StartedServer,
    *,
    write: Callable[[str], None],
    grace: float = STOP_GRACE_S,
) -> int | None:
    """Foreground: stream the log via `write` until the server exits (return its exit code) or
    we are interrupted (KeyboardInterrupt propagates). Either way the group is stopped and the
    row removed."""
    follower = server.follower or LogFollower(server.process.log_path)
    try:
        follow(follower, write, lambda: server.process.exit_code() is None)
        return server.process.exit_code()
    finally:
        process.stop_group(server.process.pid, grace=grace, popen=server.process.popen)
        servers.delete_server(db, server.row.id or 0)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C while the block runs, so `kill <rebase pid>` also stops the
    server it started. Only the main thread can install signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
