"""Start-up, readiness, registry and stop with real processes: a tiny HTTP server script stands
in for an engine so every failure mode (exits early, never healthy, ignores SIGTERM, forks
workers) is reproducible in a fraction of a second."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.serving import launchers, process, registry, service
from rebase_cli.serving.health import StartupError
from rebase_cli.serving.launchers import ServeSpec
from rebase_cli.serving.logs import LogFollower
from rebase_cli.store import servers
from rebase_cli.store.database import Database
from rebase_cli.store.models import ServerRow

FAKE_SERVER = r"""
import http.server, signal, subprocess, sys

mode, port = sys.argv[1], int(sys.argv[2])
print(f"fake engine starting ({mode})", flush=True)
if mode == "exit":
    print("RuntimeError: CUDA out of memory (fake)", file=sys.stderr, flush=True)
    sys.exit(3)
if "stubborn" in mode:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "worker" in mode:
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    print(f"worker pid {worker.pid}", flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/v1/models":
            body = b'{"object": "list", "data": [{"id": "fake-model"}]}'
        else:
            body = b"{}"
        self.send_response(503 if mode == "loading" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        print("GET", self.path, flush=True)


http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class FakeLauncher:
    """A launcher whose server is FAKE_SERVER in the given mode."""

    name = "fake"
    default_timeout = 10.0
    options = frozenset({"model"})

    def __init__(self, script: Path, mode: str) -> None:
        self.script, self.mode = script, mode

    def preflight(self, spec: ServeSpec) -> None:
        pass

    def command(self, spec: ServeSpec) -> list[str]:
        return [sys.executable, str(self.script), self.mode, str(spec.port)]

    def env(self, spec: ServeSpec) -> dict[str, str]:
        return {}


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_server.py"
    path.write_text(FAKE_SERVER)
    return path


def _no_process_runs(script: Path) -> bool:
    """No child of ours still runs `script`, and none is an unreaped zombie."""
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or str(script) in child.cmdline():
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def _start(db: Database, tmp_path: Path, script: Path, mode: str, **kwargs):
    return service.start_server(
        db,
        ServeSpec(role="policy", engine="fake", port=0),
        log_dir=tmp_path / "logs",
        launcher=FakeLauncher(script, mode),
        **kwargs,
    )


def _gone(pid: int) -> bool:
    """No process and no zombie with this pid (our own children must be reaped)."""
    return not psutil.pid_exists(pid)


def _not_running(pid: int) -> bool:
    """Gone, or a zombie waiting for init: an orphaned worker is reaped by init, not by us."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_started_server_is_registered_healthy_and_its_group_is_stopped(db, tmp_path, script):
    started = _start(db, tmp_path, script, "ok-worker")
    row = started.row
    assert row.status == "running" and row.model == "fake-model"  # from /v1/models
    assert row.url == f"http://127.0.0.1:{row.port}" and row.pid == started.process.pid
    assert os.getpgid(row.pid) == row.pid  # its own process group
    worker = int(re.search(r"worker pid (\d+)", Path(row.log_path).read_text()).group(1))
    assert os.getpgid(worker) == row.pid

    [state] = registry.server_states(db)
    assert state.alive and state.healthy and state.uptime_seconds is not None
    assert registry.healthy_server_url(db, "policy") == row.url
    assert registry.healthy_server_url(db, "reward") is None

    [report] = registry.stop_servers(db, "policy", grace=5)
    assert report.outcome == "terminated"
    assert _gone(row.pid) and _not_running(worker)  # the whole group
    assert servers.list_servers(db) == []


def test_sigkill_after_the_grace_period_for_a_server_that_ignores_sigterm(db, tmp_path, script):
    started = _start(db, tmp_path, script, "ok-stubborn")
    t0 = time.monotonic()
    [report] = registry.stop_servers(db, grace=0.5)
    assert report.outcome == "killed" and time.monotonic() - t0 >= 0.5
    assert _gone(started.row.pid)


def test_server_that_exits_during_start_up_fails_fast_with_its_log(db, tmp_path, script):
    t0 = time.monotonic()
    with pytest.raises(StartupError, match="exited with code 3 during start-up") as error:
        _start(db, tmp_path, script, "exit", timeout=30)
    assert time.monotonic() - t0 < 10  # not the 30 s timeout
    assert "RuntimeError: CUDA out of memory (fake)" in error.value.log_tail
    assert servers.list_servers(db) == []
    assert _no_process_runs(script)


def test_server_that_never_becomes_healthy_times_out_and_is_stopped(db, tmp_path, script):
    phases: list[str] = []
    with pytest.raises(StartupError, match=r"not healthy after 1\.5 s") as error:
        _start(
            db, tmp_path, script, "loading", timeout=1.5, on_progress=lambda p, _: phases.append(p)
        )
    assert "last state: loading (HTTP 503)" in error.value.message
    assert "loading (HTTP 503)" in phases
    assert any("fake engine starting (loading)" in line for line in error.value.log_tail)
    assert servers.list_servers(db) == []
    assert _no_process_runs(script)


def _cli(tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(tmp_path / "r.db"), *args])


def test_cli_start_failure_prints_the_log_tail_then_one_error_line(tmp_path, script, monkeypatch):
    monkeypatch.setitem(launchers.ENGINES, "sim", FakeLauncher(script, "exit"))
    result = _cli(tmp_path, "serve", "policy", "--engine", "sim", "--detach", "--port", "0")
    assert result.exit_code == 1
    assert "RuntimeError: CUDA out of memory (fake)" in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [
        "error: policy server (fake) exited with code 3 during start-up (see its log lines above)"
    ]


def test_cli_detach_status_logs_stop(tmp_path, script, monkeypatch):
    monkeypatch.setitem(launchers.ENGINES, "sim", FakeLauncher(script, "ok"))
    started = _cli(tmp_path, "serve", "reward", "--engine", "sim", "-d", "--port", "0")
    assert started.exit_code == 0, started.output
    assert "reward server ready at http://127.0.0.1:" in started.stderr

    status = _cli(tmp_path, "serve", "status", "--json")
    [entry] = json.loads(status.stdout)
    assert entry["role"] == "reward" and entry["alive"] and entry["healthy"]
    assert entry["log_path"].startswith(str(tmp_path / "r.db.logs"))
    table = _cli(tmp_path, "serve", "status").stdout
    assert "reward" in table and str(entry["pid"]) in table and "yes" in table

    logs = _cli(tmp_path, "serve", "logs", "reward", "-n", "5")
    # Readiness asks /ready first (SGLang answers it at once; its /health runs a generation).
    assert logs.exit_code == 0 and "GET /ready" in logs.stdout

    stopped = _cli(tmp_path, "serve", "stop", "reward")
    assert stopped.exit_code == 0 and "stopped reward server" in stopped.stdout
    assert _gone(entry["pid"])
    assert json.loads(_cli(tmp_path, "serve", "status", "--json").stdout) == []
    assert _no_process_runs(script)


def test_cli_sglang_command_line_with_the_launch_patched(tmp_path, script, monkeypatch):
    """The exact argv reaches the process launcher; a fake server plays SGLang's part."""
    launched: list[list[str]] = []
    real_start = process.start

    def fake_start(argv, log_path, **kwargs):
        launched.append(list(argv))
        return real_start(
            [sys.executable, str(script), "ok", argv[argv.index("--port") + 1]], log_path, **kwargs
        )

    monkeypatch.setattr(launchers.SGLangLauncher, "preflight", lambda self, spec: None)
    monkeypatch.setattr(process, "start", fake_start)
    result = _cli(
        tmp_path, "serve", "reward", "--engine", "sglang", "--model", "org/prm",
        "--tp", "2", "--dp", "2", "--port", "0", "--api-key", "sk-secret",
        "--reward-protocol", "classify", "--detach",
        "--", "--max-running-requests", "64",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    port = launched[0][launched[0].index("--port") + 1]
    assert launched == [[
        sys.executable, "-m", "sglang.launch_server",
        "--model-path", "org/prm", "--host", "127.0.0.1", "--port", port,
        "--tp-size", "2", "--dp-size", "2", "--api-key", "sk-secret",
        "--is-embedding", "--max-running-requests", "64",
    ]]  # fmt: skip
    db = Database.open(tmp_path / "r.db")
    [row] = servers.list_servers(db)
    assert "sk-secret" not in row.command_json and "***" in row.command_json
    assert row.api_key_env == "REBASE_API_KEY" and row.model == "org/prm"
    server = registry.healthy_server(db, "reward")
    assert server is not None and server.reward_protocol == "classify"
    assert "sk-secret" not in Path(row.log_path).read_text()
    assert _cli(tmp_path, "serve", "stop", "--all").exit_code == 0
    assert _gone(row.pid)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _row(pid: int, started_at: datetime, port: int = 9) -> ServerRow:
    return ServerRow(
        role="policy", engine="sim", url=f"http://127.0.0.1:{port}", host="127.0.0.1",
        port=port, pid=pid, command_json="[]", started_at=started_at,
    )  # fmt: skip


def test_stale_and_recycled_pids_show_dead_and_stop_only_cleans_them(tmp_path):
    db = Database.open(tmp_path / "r.db")
    servers.add_server(db, _row(_dead_pid(), datetime(2020, 1, 1, tzinfo=timezone.utc)))
    # Our own pid with another start time: a recycled pid that must never be signalled.
    servers.add_server(db, _row(os.getpid(), datetime(2001, 1, 1, tzinfo=timezone.utc)))

    status = json.loads(_cli(tmp_path, "serve", "status", "--json").stdout)
    assert [(s["alive"], s["healthy"]) for s in status] == [(False, False), (False, False)]
    assert "dead" in _cli(tmp_path, "serve", "status").stdout
    assert registry.healthy_server_url(db, "policy") is None

    result = _cli(tmp_path, "serve", "stop", "policy")
    assert result.exit_code == 0
    assert "now belongs to another process, left it alone" in result.stdout
    assert "the process is gone" in result.stdout
    assert servers.list_servers(db) == []  # and we are still alive to check it


def test_stop_needs_a_role_or_all(tmp_path):
    assert _cli(tmp_path, "serve", "stop").exit_code == 2
    assert _cli(tmp_path, "serve", "stop", "policy", "--all").exit_code == 2
    assert "no server registered" in _cli(tmp_path, "serve", "stop", "--all").stdout
    missing = _cli(tmp_path, "serve", "logs", "policy")
    assert missing.exit_code == 1 and "no policy server registered" in missing.stderr


def test_log_follower_returns_whole_lines_only(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("one\ntw")
    follower = LogFollower(path)
    assert follower.read_new() == "one\n"
    with open(path, "a") as file:
        file.write("o\nthree")
    assert follower.read_new() == "two\n"
    assert follower.flush() == "three\n"
