"""What every command shares: the database location, the consoles, JSON output."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from rebase_cli.errors import NotFoundError
from rebase_cli.paths import DEFAULT_DB_NAME, default_db_path

if TYPE_CHECKING:  # the store pulls in sqlalchemy and alembic, which `--help` need not pay for
    from rebase_cli.store.database import Database

console = Console()
err_console = Console(stderr=True)


class _State:
    db_path: Path | None = None


state = _State()


def db_path() -> Path:
    """The database chosen by --db, else $REBASE_DB, else ./rebase.db."""
    return state.db_path if state.db_path is not None else default_db_path()


# A command the tool prints for the user to run next: `rebase` followed by a subcommand.
_PRINTED_COMMAND = re.compile(
    r"(?<![\w./-])rebase (?=(?:search|report|runs|db|datasets|serve|models|grade|tree|export)\b)"
)


def with_db(text: str) -> str:
    """`text` with `--db PATH` after every printed `rebase SUBCOMMAND` when the database is not
    the default ./rebase.db, so that each next command works exactly as printed (in another
    shell too, where $REBASE_DB may be unset)."""
    path = db_path()
    if path.resolve() == (Path.cwd() / DEFAULT_DB_NAME).resolve():
        return text
    return _PRINTED_COMMAND.sub(f"rebase --db {shlex.quote(str(path))} ", text)


def open_db() -> Database:
    """Open (and migrate) the chosen database, creating it if it does not exist."""
    from rebase_cli.store.database import Database

    return Database.open(db_path())


def open_existing_db() -> Database:
    """Open the chosen database for commands that only read runs: a mistyped --db is an error,
    not a new empty database."""
    from rebase_cli.store.database import Database

    path = db_path()
    if not path.exists():
        raise NotFoundError(
            f"no database at {path}",
            "pass the right --db or REBASE_DB, or start with `rebase search`",
        )
    if path.is_file() and path.stat().st_size == 0:
        # Opening would write a whole schema into it: not what a command that reads does.
        raise NotFoundError(
            f"{path} is an empty file, not a rebase database",
            "pass the right --db or REBASE_DB, or start with `rebase search`",
        )
    return Database.open(path)


def print_json(payload: Any) -> None:
    """Write JSON for scripts to stdout, bypassing rich's markup and wrapping."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
