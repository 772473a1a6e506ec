"""Registered servers and their liveness: what `serve status`, `serve stop` and `rebase search`
(when no URL is given) rely on.

A row is "alive" only when its pid is running AND started at the recorded time, so a recycled
pid never passes for one of our servers and is never signalled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from rebase_cli.serving import health, process
from rebase_cli.serving.process import DEFAULT_GRACE_S, StopOutcome
from rebase_cli.store import servers
from rebase_cli.store.database import Database
from rebase_cli.store.models import ServerRow, utcnow


@dataclass(frozen=True)
class ServerState:
    """A registered server as seen now. `healthy` is None when it was not probed."""

    row: ServerRow
    alive: bool
    healthy: bool | None
    uptime_seconds: float | None

    def as_dict(self) -> dict[str, object]:
        row = self.row
        return {
            "id": row.id,
            "role": row.role,
            "engine": row.engine,
            "model": row.model,
            "url": row.url,
            "host": row.host,
            "port": row.port,
            "pid": row.pid,
            "status": row.status,
            "alive": self.alive,
            "healthy": self.healthy,
            "uptime_seconds": self.uptime_seconds,
            "started_at": row.started_at.isoformat(),
            "log_path": row.log_path,
            "api_key_env": row.api_key_env,
            "command": json.loads(row.command_json),
        }


@dataclass(frozen=True)
class RegisteredServer:
    """What a client needs to use a registered server (the key itself comes from the env)."""

    role: str
    url: str
    model: str | None
    engine: str
    api_key_env: str | None
    reward_protocol: str | None  # "classify" for an SGLang --is-embedding server, else None


def is_alive(row: ServerRow) -> bool:
    return process.is_same_process(row.pid, row.started_at)


def _api_key(row: ServerRow) -> str | None:
    return os.environ.get(row.api_key_env) if row.api_key_env else None


def server_states(
    db: Database, role: str | None = None, *, probe: bool = True
) -> list[ServerState]:
    """Every registered server (newest first) with liveness, and health when `probe`."""
    now = utcnow()
    states = []
    for row in servers.list_servers(db, role):
        alive = is_alive(row)
        healthy: bool | None = None
        if probe:
            healthy = alive and health.is_healthy(row.url, api_key=_api_key(row))
        uptime = (now - row.started_at).total_seconds() if alive else None
        states.append(ServerState(row=row, alive=alive, healthy=healthy, uptime_seconds=uptime))
    return states


def healthy_server(db: Database, role: str) -> RegisteredServer | None:
    """The newest registered `role` server that is alive and answers /health, or None."""
    for row in servers.list_servers(db, role):
        if is_alive(row) and health.is_healthy(row.url, api_key=_api_key(row)):
            argv = json.loads(row.command_json)
            return RegisteredServer(
                role=row.role,
                url=row.url,
                model=row.model,
                engine=row.engine,
                api_key_env=row.api_key_env,
                reward_protocol="classify" if "--is-embedding" in argv else None,
            )
    return None


def healthy_server_url(db: Database, role: str) -> str | None:
    """The base URL (no /v1) of the newest healthy registered `role` server, or None."""
    server = healthy_server(db, role)
    return server.url if server is not None else None


@dataclass(frozen=True)
class StopReport:
    row: ServerRow
    outcome: str  # a StopOutcome value, "stale" (nothing ran) or "foreign" (pid reused)

    def describe(self) -> str:
        row = self.row
        what = f"{row.role} server ({row.engine}, pid {row.pid}, {row.url})"
        return {
            StopOutcome.TERMINATED.value: f"stopped {what}",
            StopOutcome.KILLED.value: f"killed {what} (it ignored SIGTERM)",
            StopOutcome.GONE.value: f"removed {what}: it had already exited",
            "stale": f"removed stale entry {what}: the process is gone",
            "foreign": f"removed stale entry {what}: pid {row.pid} now belongs to another "
            "process, left it alone",
        }[self.outcome]


def stop_servers(
    db: Database, role: str | None = None, *, grace: float = DEFAULT_GRACE_S
) -> list[StopReport]:
    """Stop every registered server (of `role` when given) and remove its row.

    Only recorded process groups are signalled: the leader must be the recorded process; when
    the leader is gone, leftover workers of its group are stopped too (the group id cannot have
    been reused while they live)."""
    reports = []
    for row in servers.list_servers(db, role):
        if is_alive(row):
            outcome = process.stop_group(row.pid, grace=grace).value
        elif process.pid_exists(row.pid):
            outcome = "foreign"
        elif process.group_alive(row.pid):
            outcome = process.stop_group(row.pid, grace=grace).value
        else:
            process.reap(row.pid)  # a zombie of ours, if we started it in this process
            outcome = "stale"
        servers.delete_server(db, row.id or 0)
        reports.append(StopReport(row=row, outcome=outcome))
    return reports


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
