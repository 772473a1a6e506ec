"""Migrations: the schema they build, revisions, refusal of newer databases, bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from rebase_cli.errors import StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.migrate import head_revision
from rebase_cli.store.models import SQLModel

EXPECTED_COLUMNS = {
    "run": {
        "id", "name", "method", "dataset", "dataset_sha256", "budget", "config_json",
        "fingerprint", "policy_url", "policy_model", "reward_url", "reward_model",
        "reward_protocol", "capabilities_json", "simulated", "seed", "status", "lease_owner",
        "lease_expires_at", "wall_seconds", "created_at", "updated_at", "group_name",
    },
    "run_group": {"id", "name", "spec_json", "created_at"},
    "score_set": {
        "id", "run_id", "name", "reward_url", "reward_model", "reward_protocol", "status",
        "error", "created_at",
    },
    "node_score": {"score_set_id", "node_id", "score"},
    "problem": {
        "id", "run_id", "dataset_index", "source_id", "question", "reference_answer", "subject",
        "level", "status", "error", "depth_completed", "policy_prompt_tokens",
        "policy_completion_tokens", "reward_tokens", "policy_requests", "reward_requests",
        "retries", "elapsed_seconds", "started_at", "finished_at",
    },
    "node": {
        "id", "problem_id", "parent_id", "depth", "ordinal", "text", "score", "path_tokens",
        "prompt_tokens", "completion_tokens", "finish_reason", "terminal", "terminal_reason",
        "answer", "seed",
    },
    "allocation": {"id", "problem_id", "depth", "node_id", "weight", "children", "subtree"},
    "server": {
        "id", "role", "engine", "model", "url", "host", "port", "pid", "command_json",
        "log_path", "api_key_env", "status", "started_at",
    },
    "grade": {"id", "grader_version", "dataset", "reference", "answer", "correct", "reason"},
}  # fmt: skip


def test_empty_database_migrates_to_exactly_the_expected_columns(db: Database) -> None:
    inspector = inspect(db.engine)
    tables = set(inspector.get_table_names()) - {"alembic_version"}
    assert tables == set(EXPECTED_COLUMNS)
    for table, columns in EXPECTED_COLUMNS.items():
        assert {c["name"] for c in inspector.get_columns(table)} == columns, table


def test_models_match_the_migrated_schema(db: Database) -> None:
    """The SQLModel classes and the alembic scripts describe the same schema: tables, columns,
    types, nullability, indexes, unique constraints and foreign keys (alembic's own
    autogenerate comparison finds nothing to change)."""
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    assert differences == []


def test_database_is_stamped_at_head_and_uses_wal_and_foreign_keys(db: Database) -> None:
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == (
            head_revision()
        )
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000


def test_reopening_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    Database.open(path).close()
    Database.open(path).close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    Database.open(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_future'")
    with pytest.raises(StoreError, match="newer than this rebase"):
        Database.open(path)


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError, match="not a rebase database"):
        Database.open(path)
    assert path.read_text().startswith("these are my notes")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Database.open(tmp_path / "nope" / "x.db")


def test_a_database_at_the_first_revision_keeps_its_allocations_readable(tmp_path: Path) -> None:
    from alembic import command

    from rebase_cli.store import migrate

    path = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        config = migrate._config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()
    with sqlite3.connect(path) as connection:
        connection.executescript(
            "INSERT INTO run (id, method, dataset, dataset_sha256, budget, config_json, "
            "fingerprint, simulated, seed, status, wall_seconds, created_at, updated_at) VALUES "
            "(1, 'rebase', 'gsm8k', 'x', 4, '{}', 'f', 0, 0, 'done', 0, '2026-01-01', "
            "'2026-01-01');"
            "INSERT INTO problem (id, run_id, dataset_index, source_id, question, "
            "reference_answer, status, depth_completed, policy_prompt_tokens, "
            "policy_completion_tokens, reward_tokens, policy_requests, reward_requests, retries, "
            "elapsed_seconds) VALUES (1, 1, 0, 's', 'q', '1', 'done', 0, 0, 0, 0, 0, 0, 0, 0);"
            "INSERT INTO node (id, problem_id, depth, ordinal, text, score, path_tokens, "
            "prompt_tokens, completion_tokens, terminal) VALUES (1, 1, 0, 0, '', 1.0, 0, 0, 0, 0);"
            "INSERT INTO allocation (problem_id, depth, node_id, weight, children) "
            "VALUES (1, 0, 1, 1.0, 4);"
        )
    db = Database.open(path)
    try:
        from tests.store_helpers import load_allocations

        (row,) = load_allocations(db, 1)
        assert (row.weight, row.children, row.subtree) == (1.0, 4, None)
    finally:
        db.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (
            head_revision(),
        )
