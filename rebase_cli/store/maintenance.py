"""Database-level operations: status figures and online backup."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from rebase_cli.errors import StoreError
from rebase_cli.store.database import Database
from rebase_cli.store.migrate import current_revision, head_revision

COUNTED_TABLES = ("run", "problem", "node", "allocation", "server", "grade")


@dataclass(frozen=True)
class DatabaseStatus:
    path: str
    revision: str | None
    head: str
    size_bytes: int
    rows: dict[str, int]

    @property
    def up_to_date(self) -> bool:
        return self.revision == self.head


def database_status(db: Database) -> DatabaseStatus:
    """Revision, size and row counts, read in one transaction.

    The size is the database's own (pages × page size, the WAL's committed pages included), the
    same whether or not the WAL has been folded into the main file yet; the main file alone
    would read 4 KiB just after creation and 76 KiB a moment later."""
    with db.read() as session:
        connection = session.connection()
        revision = current_revision(connection)
        rows = {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in COUNTED_TABLES
        }
        pages = connection.execute(text("PRAGMA page_count")).scalar_one()
        page_size = connection.execute(text("PRAGMA page_size")).scalar_one()
    size = pages * page_size
    return DatabaseStatus(str(db.path), revision, head_revision(), size, rows)


def backup(db: Database, destination: Path) -> Path:
    """A consistent copy of the live database via `VACUUM INTO` (safe while others write)."""
    destination = Path(destination)
    if destination.exists():
        raise StoreError(f"{destination} already exists", "choose a new file name for the backup")
    if not destination.parent.exists():
        raise StoreError(f"folder {destination.parent} does not exist", "create it first")
    # VACUUM cannot run inside a transaction, and SQLAlchemy begins one on first use: go to the
    # driver connection, which is in autocommit mode (isolation_level None, see engine.py).
    raw = db.engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM INTO ?", (str(destination),))
    except sqlite3.Error as exc:
        raise StoreError(f"backup to {destination} failed: {exc}", "check the folder") from None
    finally:
        raw.close()
    return destination
