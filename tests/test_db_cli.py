"""`rebase db path|status|upgrade|backup` on real files."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.store.migrate import head_revision


def test_db_status_in_a_new_folder_creates_the_database_at_head(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert Path(status["path"]) == tmp_path / "rebase.db" and (tmp_path / "rebase.db").is_file()
    assert status["revision"] == head_revision() and status["up_to_date"]
    assert CliRunner().invoke(app, ["db", "path"]).stdout.strip() == str(tmp_path / "rebase.db")


def test_db_env_var_and_flag_move_the_database(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REBASE_DB", str(tmp_path / "env.db"))
    assert CliRunner().invoke(app, ["db", "path"]).stdout.strip() == str(tmp_path / "env.db")
    flagged = CliRunner().invoke(app, ["--db", str(tmp_path / "flag.db"), "db", "path"])
    assert flagged.stdout.strip() == str(tmp_path / "flag.db")


def test_backup_is_a_consistent_copy_and_refuses_to_overwrite(tmp_path) -> None:
    db = tmp_path / "live.db"
    assert CliRunner().invoke(app, ["--db", str(db), "db", "upgrade"]).exit_code == 0
    copy = tmp_path / "copy.db"
    result = CliRunner().invoke(app, ["--db", str(db), "db", "backup", str(copy)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(copy) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),
        )
    again = CliRunner().invoke(app, ["--db", str(db), "db", "backup", str(copy)])
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_commands_that_only_read_runs_never_create_a_database(tmp_path) -> None:
    typo = tmp_path / "typo.db"
    for args in (["runs"], ["runs", "show", "run-3"], ["report", "latest"], ["tree", "1", "0"]):
        result = CliRunner().invoke(app, ["--db", str(typo), *args])
        assert result.exit_code == 1, (args, result.output)
        assert f"no database at {typo}" in result.stderr
    assert not typo.exists()
