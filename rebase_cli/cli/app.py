"""The `rebase` command: the root Typer app, global options and the error boundary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from rebase_cli import __version__
from rebase_cli.cli import common
from rebase_cli.errors import RebaseError


def print_error(message: str) -> None:
    """One `error:` line on stderr."""
    # escape: messages hold literal brackets (`pip install 'rebase-cli[sglang]'`);
    # soft_wrap: the message stays one line for scripts and logs.
    text = " ".join(message.split())
    common.err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


class ErrorBoundaryGroup(TyperGroup):
    """Turns a known `RebaseError` into one line on stderr and its exit code (1, or 2 for
    usage errors), and does the same for the parser's own usage errors (a bad option value,
    an unknown option). Any other exception is a bug and keeps its traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RebaseError as exc:
            print_error(exc.one_line())
            raise typer.Exit(exc.exit_code) from None

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except Exception as exc:
            # The parser's errors (typer bundles its own Click, so they are recognised by
            # shape): a bare `rebase` or `rebase serve` shows its help, which is not an error.
            if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
                if type(exc).__name__ == "Abort":
                    common.err_console.print("aborted")
                    sys.exit(1)
                raise
            if type(exc).__name__ != "NoArgsIsHelpError":
                ctx = getattr(exc, "ctx", None)
                where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
                print_error(exc.format_message() + where)
            sys.exit(exc.exit_code)
        # Without standalone mode an explicit Exit comes back as its code; a command's own
        # return value (None) means success.
        sys.exit(result if isinstance(result, int) else 0)


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
        check_cmd,
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
    app.command("check")(check_cmd.check)
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
