"""`rebase serve` with the real simulator engine: readiness, registry, status, stop, and the
foreground mode's clean shutdown on Ctrl-C / SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.serving import registry, service
from rebase_cli.serving.launchers import ServeSpec
from rebase_cli.store.database import Database


def _cli(db: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(db), *args])


def _gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not psutil.pid_exists(pid)


def test_detached_simulator_is_ready_registered_reported_and_stopped(tmp_path):
    db = tmp_path / "r.db"
    started = _cli(db, "serve", "policy", "--engine", "sim", "--port", "0", "--detach")
    assert started.exit_code == 0, started.output
    assert "policy server ready at http://127.0.0.1:" in started.stderr

    [entry] = json.loads(_cli(db, "serve", "status", "--json").stdout)
    assert (entry["role"], entry["engine"], entry["alive"], entry["healthy"]) == (
        "policy", "sim", True, True,
    )  # fmt: skip
    assert entry["model"]  # as reported by the simulator's /v1/models
    assert httpx.get(f"{entry['url']}/health", timeout=5).status_code == 200
    assert Path(entry["log_path"]).parent == tmp_path / "r.db.logs"
    assert registry.healthy_server_url(Database.open(db), "policy") == entry["url"]

    stopped = _cli(db, "serve", "stop", "policy")
    assert stopped.exit_code == 0 and "stopped policy server" in stopped.stdout
    assert _gone(entry["pid"])
    assert json.loads(_cli(db, "serve", "status", "--json").stdout) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{entry['url']}/health", timeout=2)


def test_deterministic_simulator_says_so_in_its_server_info(tmp_path):
    db = tmp_path / "r.db"
    started = _cli(
        db, "serve", "policy", "--engine", "sim", "--port", "0", "--deterministic", "--detach"
    )
    assert started.exit_code == 0, started.output
    [entry] = json.loads(_cli(db, "serve", "status", "--json").stdout)
    try:
        info = httpx.get(f"{entry['url']}/server_info", timeout=5).json()
        assert info["enable_deterministic_inference"] is True
    finally:
        assert _cli(db, "serve", "stop", "policy").exit_code == 0


def test_readiness_goes_through_loading_to_ready_and_names_the_model(tmp_path):
    db = Database.open(tmp_path / "r.db")
    phases: list[str] = []
    spec = ServeSpec(
        role="reward", engine="sim", port=0, model="sim-my-prm", extra_args=("--load-seconds", "1")
    )
    started = service.start_server(
        db, spec, log_dir=tmp_path / "logs", on_progress=lambda phase, _: phases.append(phase)
    )
    try:
        assert "loading (HTTP 503)" in phases  # the simulator's model-loading phase
        assert started.ready_seconds >= 1
        assert started.row.model == "sim-my-prm"
        assert registry.healthy_server(db, "reward").model == "sim-my-prm"
    finally:
        [report] = registry.stop_servers(db, "reward")
    assert report.outcome == "terminated" and _gone(started.row.pid)


def _lines(stream) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_foreground_server_stops_cleanly_when_interrupted(tmp_path, sig):
    db = tmp_path / "r.db"
    out = open(tmp_path / "stdout.txt", "w")  # noqa: SIM115 - the child writes to it
    cli = subprocess.Popen(
        [sys.executable, "-m", "rebase_cli", "--db", str(db), "serve", "reward",
         "--engine", "sim", "--port", "0"],
        stdout=out, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        stderr = _lines(cli.stderr)
        seen = []
        deadline = time.monotonic() + 60
        while not any("ready at" in line for line in seen) and time.monotonic() < deadline:
            try:
                seen.append(stderr.get(timeout=1))
            except queue.Empty:
                assert cli.poll() is None, "".join(seen)
        match = re.search(r"ready at (\S+) .*pid (\d+)", "".join(seen))
        assert match, "".join(seen)
        url, pid = match.group(1), int(match.group(2))
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        [entry] = json.loads(_cli(db, "serve", "status", "--json").stdout)
        assert entry["pid"] == pid and entry["healthy"]

        cli.send_signal(sig)
        assert cli.wait(timeout=30) == 130
        assert _gone(pid)
        assert json.loads(_cli(db, "serve", "status", "--json").stdout) == []
        # The foreground streams the server's log to stdout.
        assert f"rebase-sim reward listening on {url}" in (tmp_path / "stdout.txt").read_text()
    finally:
        out.close()
        if cli.poll() is None:
            cli.kill()
            cli.wait()
