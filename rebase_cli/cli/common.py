"""What every command shares: the database location, the consoles, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from rebase_cli.paths import default_db_path
from rebase_cli.store.database import Database

console = Console()
err_console = Console(stderr=True)


class _State:
    db_path: Path | None = None


state = _State()


def db_path() -> Path:
    """The database chosen by --db, else $REBASE_DB, else ./rebase.db."""
    return state.db_path if state.db_path is not None else default_db_path()


def open_db() -> Database:
    """Open (and migrate) the chosen database."""
    return Database.open(db_path())


def print_json(payload: Any) -> None:
    """Write JSON for scripts to stdout, bypassing rich's markup and wrapping."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
