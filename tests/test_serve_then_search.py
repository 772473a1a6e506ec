"""`rebase search` with no URLs uses the healthy servers `rebase serve` registered, and a
missing server is a one-line usage error."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app


def _cli(db: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(db), *args])


@pytest.mark.parametrize("deterministic", [True, False], ids=["sglang", "vllm"])
def test_search_uses_the_registered_servers(tmp_path: Path, deterministic: bool) -> None:
    """The simulator plays SGLang as `rebase serve` starts it with --deterministic (priority
    scheduling on, so the search sends each level's priority), and vLLM without."""
    db = tmp_path / "s.db"
    for role in ("policy", "reward"):
        flags = ["--deterministic"] if deterministic and role == "policy" else []
        started = _cli(db, "serve", role, "--engine", "sim", "--port", "0", "--detach", *flags)
        assert started.exit_code == 0, started.output
    servers = {s["role"]: s for s in json.loads(_cli(db, "serve", "status", "--json").stdout)}
    try:
        result = _cli(db, "search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["done"] == 2
        queue = "shallower levels first" if deterministic else None
        assert summary["policy_queue_priority"] == queue
        run = json.loads(_cli(db, "runs", "show", "latest", "--json").stdout)
        assert run["policy"]["url"] == servers["policy"]["url"]
        assert run["reward"]["url"] == servers["reward"]["url"]
        assert run["policy"]["model"].startswith("sim-") and run["simulated"]
    finally:
        assert _cli(db, "serve", "stop", "--all").exit_code == 0
    for entry in servers.values():
        assert not psutil.pid_exists(entry["pid"]) or (
            psutil.Process(entry["pid"]).status() == psutil.STATUS_ZOMBIE
        )


def test_search_without_servers_says_how_to_get_one(tmp_path: Path) -> None:
    result = _cli(tmp_path / "e.db", "search", "--dataset", "gsm8k", "--budget", "4")
    assert result.exit_code == 2
    assert "no policy server given and none registered as healthy" in result.stderr
    # The server must be registered in this database for the search to find it.
    started_by = f"rebase --db {tmp_path / 'e.db'} serve policy"
    assert started_by in result.stderr and len(result.stderr.strip().splitlines()) == 1
