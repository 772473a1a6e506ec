"""Forward-only migrations, applied when a database is opened.

The scripts live in the top-level `migrations/` folder of the source tree, and inside the wheel
as `rebase_cli/_migrations`. Opening checks the stored revision first (one query), so an
up-to-date database costs no alembic start-up.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from rebase_cli.errors import StoreError
from rebase_cli.store.engine import writer


def migrations_dir() -> Path:
    """The folder holding env.py and versions/, installed or in the source tree."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StoreError("rebase's migration scripts are missing", "reinstall rebase-cli")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    return config


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _script().get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    return {rev.revision for rev in _script().walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or None for an empty database."""
    has_table = connection.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
    ).first()
    if not has_table:
        return None
    row = connection.execute(text("SELECT version_num FROM alembic_version")).first()
    return row[0] if row else None


def check_not_newer(path: Path, revision: str | None) -> None:
    """Refuse a database stamped by a newer rebase (a revision this code does not know)."""
    if revision is not None and revision not in known_revisions():
        raise StoreError(
            f"database {path} is at schema revision {revision}, newer than this rebase "
            f"(latest known: {head_revision()})",
            "upgrade rebase-cli (pip install -U rebase-cli) or use another --db",
        )


def refuse_foreign(path: Path, connection: Connection) -> None:
    """Refuse an SQLite file that holds another program's tables: migrating it would add
    rebase's tables to someone else's database."""
    tables = [
        name
        for (name,) in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    if tables:
        raise StoreError(
            f"{path} is an SQLite database of another program (tables: {', '.join(tables[:5])})",
            "pass another file with --db or REBASE_DB",
        )


def upgrade_to_head(engine: Engine, path: Path) -> tuple[str | None, str]:
    """Bring the database to the head revision in one write transaction.

    Returns (revision before, revision after). The write lock is taken before the revision is
    read, so two processes opening a new database at once migrate it exactly once, and a crash
    mid-migration rolls the whole migration back (SQLite DDL is transactional)."""
    head = head_revision()
    with engine.connect() as probe:
        before = current_revision(probe)
        if before is None:
            refuse_foreign(path, probe)
    check_not_newer(path, before)
    if before == head:
        return before, head
    with writer(engine).begin() as connection:
        before = current_revision(connection)
        check_not_newer(path, before)
        if before != head:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    return before, head
