"""Start-up cost of the CLI: help and cheap commands must not load the heavy libraries.

Each case runs `python -m rebase_cli ARGS` in a fresh interpreter (a module imported by an
earlier test would hide a regression here) and then lists which heavy top-level packages ended
up in `sys.modules`. The store (sqlalchemy, sqlmodel, alembic), the reports (numpy,
matplotlib), the grader (sympy, math_verify), the clients (openai, httpx) and the model code
(torch, transformers) are imported by the commands that use them, not at start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "alembic",
    "numpy",
    "sympy",
    "math_verify",
    "openai",
    "matplotlib",
    "httpx",
    "torch",
    "transformers",
)

# Runs the CLI as `python -m rebase_cli` does, then writes the exit code and the heavy packages
# that were imported to the file named by argv[1] (stdout belongs to the command).
CHILD = """
import json, runpy, sys
report, heavy, args = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
sys.argv = ["rebase", *args]
code = 0
try:
    runpy.run_module("rebase_cli", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
with open(report, "w") as handle:
    json.dump({"code": code, "loaded": [m for m in heavy if m in sys.modules]}, handle)
"""


def run_cli(tmp_path: Path, *args: str) -> tuple[dict, subprocess.CompletedProcess[str]]:
    report = tmp_path / "report.json"
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}
    env["REBASE_DB"] = str(tmp_path / "startup.db")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(report), ",".join(HEAVY), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert report.exists(), child.stderr
    return json.loads(report.read_text()), child


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["--help"], "search"),
        (["search", "--help"], "--budget"),
        (["report", "--help"], "--subsample-draws"),
        (["db", "--help"], "backup"),
        (["serve", "stop", "--help"], "--grace"),
        (["runs", "--help"], "delete"),
    ],
)
def test_help_loads_no_heavy_library(tmp_path: Path, args: list[str], shown: str) -> None:
    result, child = run_cli(tmp_path, *args)
    assert result["code"] == 0, child.stderr
    assert shown in child.stdout
    assert result["loaded"] == [], f"`rebase {' '.join(args)}` imported {result['loaded']}"


def test_help_still_shows_the_defaults_it_reads_from_light_modules(tmp_path: Path) -> None:
    """The defaults moved out of the heavy modules are the ones the commands use."""
    from rebase_cli.reports.build import ReportOptions
    from rebase_cli.reports.statistics import StatsOptions
    from rebase_cli.serving import registry

    _, report_help = run_cli(tmp_path, "report", "--help")
    assert f"[default: {ReportOptions().subsample_draws}]" in report_help.stdout
    assert f"[default: {StatsOptions().resamples}]" in report_help.stdout
    assert f"[default: {','.join(ReportOptions().rules)}]" in report_help.stdout
    _, stop_help = run_cli(tmp_path, "serve", "stop", "--help")
    assert f"[default: {registry.DEFAULT_GRACE_S}]" in stop_help.stdout


def test_db_path_neither_opens_the_database_nor_loads_the_store(tmp_path: Path) -> None:
    result, child = run_cli(tmp_path, "db", "path")
    assert result["code"] == 0, child.stderr
    assert child.stdout.strip() == str((tmp_path / "startup.db").resolve())
    assert not (tmp_path / "startup.db").exists()
    assert result["loaded"] == []


def test_a_command_that_needs_the_store_still_loads_it(tmp_path: Path) -> None:
    """The check above can fail: a command that opens the database does import sqlalchemy."""
    result, child = run_cli(tmp_path, "db", "status", "--json")
    assert result["code"] == 0, child.stderr
    assert json.loads(child.stdout)["up_to_date"] is True
    assert {"sqlalchemy", "sqlmodel", "alembic"} <= set(result["loaded"])


def test_listing_runs_loads_the_store_but_not_the_reports(tmp_path: Path) -> None:
    """`rebase runs` reads through the reports' RunReader, whose bulk tables need numpy: only
    building those tables imports it."""
    from rebase_cli.store.database import Database

    Database.open(tmp_path / "startup.db").close()
    result, child = run_cli(tmp_path, "runs", "--json")
    assert result["code"] == 0, child.stderr
    assert json.loads(child.stdout) == []
    assert "sqlmodel" in result["loaded"] and "numpy" not in result["loaded"]
