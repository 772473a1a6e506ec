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
from rebase_cli.errors import RebaseError, UsageError


def print_error(message: str) -> None:
    """One `error:` line on stderr."""
    # escape: messages hold literal brackets (`pip install 'rebase-cli[sglang]'`);
    # soft_wrap: the message stays one line for scripts and logs.
    text = common.with_db(" ".join(message.split()))
    common.err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)


GLOBAL_VALUE_OPTIONS = ("--db",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--db X` / `--db=X` given after a subcommand (`rebase search ... --db x`) to the
    front, where the root command parses it; arguments after `--` are left alone.

    Two different values are a usage error rather than a silent choice."""
    hoisted: list[str] = []
    rest: list[str] = []
    values: set[str] = set()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name, eq, value = arg.partition("=")
        if name in GLOBAL_VALUE_OPTIONS and (eq or i + 1 < len(args)):
            if not eq:
                value = args[i + 1]
                i += 1
            hoisted += [name, value]
            values.add(value)
        else:
            rest.append(arg)
        i += 1
    if len(values) > 1:
        raise UsageError(
            f"--db given twice with different files ({', '.join(sorted(values))})", "give it once"
        )
    return hoisted + rest


def conventional_metavars(command: Any) -> None:
    """Help in the usual CLI form, for `command` and every subcommand: flags (and --help) show
    no type where typer shows `<bool>`; values show an upper-case word (`INTEGER`, `PATH`,
    `TEXT`) instead of typer's Python-like `<int>`, `<list[str]>` or `<int range>`; arguments
    show their name only. Typer has no setting for this, so each parameter's
    `display_type_rich` (used only for the help's type column) is replaced."""
    for param in command.params:
        _plain_type(param)
    original = command.get_help_option

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            _plain_type(option)
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        conventional_metavars(sub)


def _plain_type(param: Any) -> None:
    if getattr(param, "param_type_name", "") == "argument":
        if param.metavar is None:  # usage and errors name it in capitals, as click does
            param.metavar = str(param.name).upper()
        word = None
    else:
        word = _type_word(param)
    param.display_type_rich = lambda ctx: word


def _type_word(param: Any) -> str | None:
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    if param.metavar is not None:
        return str(param.metavar)
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    if desc.is_choice:
        word = "[" + "|".join(str(getattr(c, "value", c)) for c in desc.choices or ()) + "]"
    elif desc.is_path:
        word = "PATH"
    else:
        bare = param.bare_type().removeprefix("list[").removesuffix("]")
        word = _TYPE_WORDS.get(bare, bare.upper())
    return word + ("..." if desc.is_list else "")


_TYPE_WORDS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT"}


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

    def main(
        self, args: Any = None, *rest: Any, standalone_mode: bool = True, **kwargs: Any
    ) -> Any:
        if not getattr(self, "_conventional", False):
            conventional_metavars(self)
            self._conventional = True
        try:
            args = hoist_global_options(list(sys.argv[1:] if args is None else args))
        except UsageError as exc:
            print_error(exc.one_line())
            sys.exit(exc.exit_code)
        if not standalone_mode:
            return super().main(args, *rest, standalone_mode=False, **kwargs)
        try:
            result = super().main(args, *rest, standalone_mode=False, **kwargs)
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
        datasets_cmd,
        db_cmd,
        grade_cmd,
        models_cmd,
        report_cmd,
        rescore_cmd,
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
    app.command("rescore")(rescore_cmd.rescore)


_register()


def main() -> None:
    app()
