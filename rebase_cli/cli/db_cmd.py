"""`rebase db path|status|upgrade|backup`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from rebase_cli.cli.common import console, db_path, open_db, print_json

app = typer.Typer(help="Inspect, migrate and back up the SQLite database.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("path")
def path_cmd() -> None:
    """Print the database file in use (--db, $REBASE_DB, or ./rebase.db)."""
    typer.echo(str(db_path().resolve()))


@app.command("status")
def status_cmd(json_output: JsonFlag = False) -> None:
    """Open the database (creating and migrating it if needed) and show its state."""
    from rebase_cli.store.maintenance import database_status

    db = open_db()
    status = database_status(db)
    if json_output:
        print_json({**dataclasses.asdict(status), "up_to_date": status.up_to_date})
        return
    table = Table(show_header=False, box=None)
    table.add_row("database", status.path)
    table.add_row("schema", f"{status.revision} (latest {status.head})")
    table.add_row("size", f"{status.size_bytes / 1024:.1f} KiB")
    for name, count in status.rows.items():
        table.add_row(name, f"{count:,}")
    console.print(table)


@app.command("upgrade")
def upgrade_cmd() -> None:
    """Migrate the database to the latest schema (opening it does this too)."""
    from rebase_cli.store.maintenance import database_status

    db = open_db()
    status = database_status(db)
    typer.echo(f"{status.path} is at schema revision {status.revision}")


@app.command("backup")
def backup_cmd(
    destination: Annotated[Path, typer.Argument(help="New file to write the copy to.")],
) -> None:
    """Write a consistent copy of the database with VACUUM INTO (safe during a run)."""
    from rebase_cli.store.maintenance import backup

    written = backup(open_db(), destination)
    typer.echo(f"backed up to {written}")
