"""What a resume tells the user: a finished run is not searched again, a resumed progress line
counts the run's whole size, and a run remembers its endpoints (never a key)."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.cli.search_progress import ProgressEvents
from rebase_cli.domain import ProblemRecord
from rebase_cli.sim.spawn import SpawnedSimulator
from tests.search_helpers import query, start_simulator
from tests.test_bad_input import SIM, checkpoint, data_dir, snapshot


def invoke(db: Path, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(
        app, ["--db", str(db), *args], env={"REBASE_DATA_DIR": data_dir(), **(env or {})}
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("finished") / "done.db"
    result = invoke(path, "search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2", *SIM)
    assert result.exit_code == 0, result.output
    checkpoint(path)
    return path


@pytest.fixture
def db(finished: Path, tmp_path: Path) -> Path:
    path = tmp_path / "done.db"
    shutil.copyfile(finished, path)
    return path


def test_run_on_a_finished_run_says_so_and_writes_nothing(db: Path) -> None:
    before = snapshot(db)
    result = invoke(db, "search", "--run", "run-1", *SIM)
    assert result.exit_code == 0, result.output
    assert "run-1 is already done (2/2 problems); nothing to resume" in result.stderr
    assert f"rebase --db {db} report run-1" in result.stderr
    assert "-:--:--" not in result.output and "0/0" not in result.output
    assert snapshot(db) == before


def test_resume_matching_only_a_finished_run_starts_no_duplicate(db: Path) -> None:
    args = ["search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2", "--resume", *SIM]
    result = invoke(db, *args)
    assert result.exit_code == 0, result.output
    assert "--resume found run-1, which finished this config" in result.stderr
    assert "drop --resume" in result.stderr
    assert query(db, "SELECT count(*) FROM run") == [(1,)]
    as_json = invoke(db, *args, "--json")
    assert json.loads(as_json.stdout) == {"run": "run-1", "already_done": True, "problems": 2}


def test_a_larger_limit_extends_a_finished_run(db: Path) -> None:
    result = invoke(db, "search", "--run", "run-1", "--limit", "3", *SIM)
    assert result.exit_code == 0, result.output
    assert "resuming run-1 (done)" in result.stdout
    assert "3/3 problems done" in result.stdout
    assert query(db, "SELECT count(*), status FROM run") == [(1, "done")]


def _problems(count: int) -> list[ProblemRecord]:
    return [ProblemRecord(id=i + 1, dataset_index=i, question="q") for i in range(count)]


@pytest.mark.parametrize("width", [80, 160])
def test_resumed_progress_counts_the_whole_run_and_keeps_total_and_eta(width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    events = ProgressEvents(console, "run-1", run_total=634).__enter__()
    remaining = _problems(32)
    events.started(remaining)
    for problem in remaining[:2]:
        events.problem_finished(problem, "done", None)
    events.__exit__(None, None, None)
    line = out.getvalue().strip().splitlines()[-1]
    assert len(line) <= width, line
    assert "604/634 problems" in line, line
    assert "ETA" in line and "0:00:0" in line, line  # elapsed and remaining time both shown


def test_a_run_remembers_its_urls_and_never_a_key(tmp_path: Path) -> None:
    sim: SpawnedSimulator = start_simulator()
    try:
        db = tmp_path / "urls.db"
        first = invoke(
            db, "search", "--dataset", "gsm8k", "--budget", "2", "--limit", "1",
            "--policy", sim.url, "--reward", sim.url, env={"REBASE_POLICY_API_KEY": "sk-secret"},
        )  # fmt: skip
        assert first.exit_code == 0, first.output
        assert query(db, "SELECT policy_url, reward_url FROM run") == [(sim.url, sim.url)]
        # No --policy/--reward: the run's own URLs are used, not a registered server.
        more = invoke(db, "search", "--run", "run-1", "--limit", "2")
        assert more.exit_code == 0, more.output
        assert "2/2 problems done" in more.stdout
    finally:
        sim.stop()
    for file in tmp_path.glob("urls.db*"):  # the database and its WAL
        assert b"sk-secret" not in file.read_bytes()


def test_operational_flags_given_with_run_reach_the_clients(db: Path) -> None:
    """`--run` keeps the run's stored config, but a session's operational values (here the
    wait for a down server) are the flags': a resume against a dead server gives up after
    `--server-wait`, not after the stored default."""
    dead = "http://127.0.0.1:9"
    args = ["--policy", dead, "--reward", dead, "--server-wait", "1", "--skip-check"]
    result = invoke(db, "search", "--run", "run-1", "--limit", "3", *args)
    assert result.exit_code != 0
    waited = re.search(
        rf"policy server {re.escape(dead)} unreachable for ([0-9.]+) s", result.stderr
    )
    assert waited is not None, result.stderr
    # 1 s of waiting plus the last attempt's backoff, on a loaded machine; the stored
    # config's wait is 300 s.
    assert float(waited.group(1)) < 60, result.stderr
    assert query(db, "SELECT count(*) FROM problem") == [(2,)]
