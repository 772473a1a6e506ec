"""Engine set-up: every connection gets WAL, a busy timeout and foreign keys.

pysqlite's own transaction handling is switched off (isolation_level=None) so that SQLAlchemy's
BEGIN is the real one: transactional DDL for migrations, and BEGIN IMMEDIATE for writers, which
take the write lock up front instead of failing with SQLITE_BUSY when upgrading a read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine, event

from rebase_cli.errors import ReadOnlyStoreError, StoreError

BUSY_TIMEOUT_MS = 30_000
IMMEDIATE = "rebase_immediate"


def create_sqlite_engine(path: Path) -> Engine:
    """An engine on `path` with the per-connection settings above (nothing is created yet)."""
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        immediate = connection.get_execution_options().get(IMMEDIATE, False)
        connection.exec_driver_sql(begin_statement(immediate=immediate))

    return engine


def begin_statement(*, immediate: bool) -> str:
    """The statement that opens a transaction: a writer's takes the write lock up front."""
    return "BEGIN IMMEDIATE" if immediate else "BEGIN"


def writer(engine: Engine) -> Engine:
    """The same engine, but its transactions start with BEGIN IMMEDIATE."""
    return engine.execution_options(**{IMMEDIATE: True})


def describe_sqlite_error(path: Path, exc: BaseException) -> StoreError:
    """Turn a driver error on open into a one-line StoreError naming the file and the fix."""
    text = str(getattr(exc, "orig", exc))
    if "not a database" in text or "malformed" in text:
        return StoreError(
            f"{path} is not a rebase database (SQLite says: {text})",
            "pass another file with --db or REBASE_DB",
        )
    if "readonly" in text or "read-only" in text:
        return ReadOnlyStoreError(
            f"{path} is read-only (SQLite says: {text})",
            "make the file and its folder writable, or pass another file with --db",
        )
    if "disk is full" in text or "No space left" in text:
        return StoreError(
            f"database {path}: the disk is full (SQLite says: {text})",
            "free space on that disk, then resume: committed levels are kept "
            "(`rebase runs` lists the run to resume with --run)",
        )
    if "unable to open" in text:
        return StoreError(
            f"cannot open database {path} (SQLite says: {text})",
            "check that the folder exists and is writable, or pass another file with --db",
        )
    return StoreError(f"database {path}: {text}", "see `rebase db status`")
