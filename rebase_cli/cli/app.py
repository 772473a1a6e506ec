"""The `rebase` command: the root Typer app, global options and the error boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from rebase_cli import __version__
from rebase_cli.cli import common
from rebase_cli.errors import RebaseError


class ErrorBoundaryGroup(TyperGroup):
    """Turns a known `RebaseError` into one line on stderr and its exit code (1, or 2 for
    usage errors). Any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RebaseError as exc:
            # escape: messages hold literal brackets (`pip install 'rebase-cli[sglang]'`);
            # soft_wrap: the message stays one line for scripts and logs.
            common.err_console.print(
                f"[bold red]error:[/] {escape(exc.one_line())}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="rebase",
    cls=ErrorBoundaryGroup,
    help="REBASE: reward-balanced tree search with language models, persisted in SQLite.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rebase {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="REBASE_DB",
            help="SQLite database file (default: ./rebase.db).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """REBASE: reward-balanced tree search with language models, persisted in SQLite."""
    common.state.db_path = db


def _register() -> None:
    # Imported here so that each command module stays independent of the others.
    from rebase_cli.cli import (
        datasets_cmd,
        db_cmd,
        grade_cmd,
        models_cmd,
        report_cmd,
        runs_cmd,
        search_cmd,
        serve_cmd,
    )

    app.command("search")(search_cmd.search)
    app.add_typer(runs_cmd.app, name="runs")
    app.add_typer(db_cmd.app, name="db")
    app.add_typer(datasets_cmd.app, name="datasets")
    app.add_typer(serve_cmd.app, name="serve")
    app.add_typer(models_cmd.app, name="models")
    app.command("grade")(grade_cmd.grade)
    app.command("report")(report_cmd.report)
    app.command("tree")(report_cmd.tree)
    app.command("export")(report_cmd.export)


_register()


def main() -> None:
    app()
