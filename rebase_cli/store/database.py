"""Opening a database: resolve the path, create the engine, migrate, and map driver errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from rebase_cli.errors import StoreError
from rebase_cli.store.engine import (
    begin_statement,
    create_sqlite_engine,
    describe_sqlite_error,
    writer,
)
from rebase_cli.store.migrate import upgrade_to_head


class Database:
    """An open, migrated database. Sessions come from `read()` and `write()`, driver cursors
    from `driver_read()` and `driver_write()`; each block is one transaction, and a write
    block is BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, path: Path, engine: Engine) -> None:
        self.path = path
        self.engine = engine
        self._writer = writer(engine)

    @classmethod
    def open(cls, path: Path, *, migrate: bool = True) -> Database:
        """Open `path`, creating and migrating it to the latest schema unless `migrate` is off."""
        path = Path(path)
        if path.exists() and path.is_dir():
            raise StoreError(f"{path} is a folder, not a database file", "pass a file with --db")
        if path.exists() and not path.is_file():
            # /dev/null, a FIFO: SQLite fails with a bare "disk I/O error" on these.
            raise StoreError(f"{path} is not a regular file", "pass a database file with --db")
        if not path.parent.exists():
            raise StoreError(
                f"folder {path.parent} does not exist", "create it or pass another --db"
            )
        engine = create_sqlite_engine(path)
        try:
            if migrate:
                upgrade_to_head(engine, path)
            else:
                with engine.connect():
                    pass
        except DBAPIError as exc:
            engine.dispose()
            raise describe_sqlite_error(path, exc) from None
        except StoreError:
            engine.dispose()
            raise
        return cls(path, engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._translate(), Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        with (
            self._translate(),
            Session(self._writer, expire_on_commit=False) as session,
            session.begin(),
        ):
            yield session

    def driver_read(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A driver cursor in one read transaction: all its statements see one snapshot, even
        while another connection commits."""
        return self._driver_cursor(immediate=False)

    def driver_write(self) -> AbstractContextManager[sqlite3.Cursor]:
        """A driver cursor in one write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on
        any exception), for the hot path that writes rows without ORM objects."""
        return self._driver_cursor(immediate=True)

    @contextmanager
    def _driver_cursor(self, *, immediate: bool) -> Iterator[sqlite3.Cursor]:
        # A pooled driver connection (set up by the engine's connect hook) with the transaction
        # statements issued here: the search commits every level this way, and a SQLAlchemy
        # Connection's begin (events, statement compilation) cost more CPU than the writes.
        with (
            self._translate(),
            closing(self.engine.raw_connection()) as pooled,  # closing returns it to the pool
            closing(pooled.driver_connection.cursor()) as cursor,  # type: ignore[union-attr]
        ):
            # Explicit: the driver's autocommit mode (isolation_level None) never begins one,
            # so without it each statement would be its own snapshot.
            cursor.execute(begin_statement(immediate=immediate))
            try:
                yield cursor
                cursor.execute("COMMIT")
            except BaseException:
                if cursor.connection.in_transaction:  # SQLite may have rolled it back itself
                    cursor.connection.rollback()
                raise

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (DBAPIError, sqlite3.Error) as exc:
            # sqlite3.Error: code that uses the driver's cursor directly (bulk grade caching)
            # gets the same one-line messages as code that goes through SQLAlchemy.
            raise describe_sqlite_error(self.path, exc) from None

    def close(self) -> None:
        self.engine.dispose()


@contextmanager
def session_cursor(session: Session) -> Iterator[sqlite3.Cursor]:
    """A driver cursor inside `session`'s transaction (for a read that mixes ORM rows with bulk
    SQL in one snapshot), closed at the end of the block."""
    with closing(session.connection().connection.cursor()) as cursor:  # type: ignore[arg-type]
        yield cursor
