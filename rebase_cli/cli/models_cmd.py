"""`rebase models list|prepare NAME`: servable model directories built without a model hub."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from rebase_cli.cli.common import console, err_console, print_json
from rebase_cli.models import MODELS, get_model, is_prepared, model_dir, prepare_model
from rebase_cli.models.prepare import StageCallback

app = typer.Typer(
    help="Prepare small real models to serve on a CPU (no model hub needed).",
    no_args_is_help=True,
)


@app.command("list")
def list_cmd(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the models `rebase models prepare` knows and whether they are prepared."""
    rows = []
    for source in MODELS.values():
        path = model_dir(source)
        rows.append(
            {
                "name": source.name,
                "prepared": is_prepared(source, path),
                "path": str(path),
                "source": f"{source.requirement} (PyPI wheel)",
                "template": source.template,
                "license": source.license,
                "description": source.description,
            }
        )
    if json_output:
        print_json(rows)
        return
    table = Table("name", "prepared", "template", "size", "path")
    table.columns[-1].overflow = "fold"  # a path is only useful whole
    for row, source in zip(rows, MODELS.values(), strict=True):
        mark = "[green]yes[/]" if row["prepared"] else "[yellow]no[/]"
        table.add_row(row["name"], mark, row["template"], source.size_hint, row["path"])
    console.print(table)
    for source in MODELS.values():
        console.print(f"{source.name}: {source.description} ({source.license})", highlight=False)


@app.command("prepare")
def prepare_cmd(
    name: Annotated[str, typer.Argument(help="Model to prepare (see `rebase models list`).")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Folder to build into (default: the user cache)."),
    ] = None,
    wheel: Annotated[
        Path | None,
        typer.Option("--wheel", help="Use this copy of the pinned wheel instead of downloading."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Build NAME's servable directory (once; later calls print its path at once)."""
    source = get_model(name)
    with _stages() as on_stage:
        prepared = prepare_model(source, output, wheel=wheel, on_stage=on_stage)
    if json_output:
        print_json(prepared.as_dict())
        return
    typer.echo(str(prepared.path))
    if not prepared.reused:
        size = prepared.size_bytes / 1e6
        err_console.print(f"prepared {source.name} ({size:.0f} MB, {prepared.dtype})")
    serve = shlex.join(
        ["rebase", "serve", "policy", "--engine", "transformers", "--model", str(prepared.path)]
    )
    judge = shlex.join(
        ["rebase", "serve", "reward", "--engine", "transformers", "--model", str(prepared.path)]
    )
    lines = [f"serve it: {serve}", f"search with it: --template {prepared.template}"]
    if source.judge_template:
        lines.append(f"judge with it: {judge}, then --template {source.judge_template}")
    err_console.print("\n".join(lines), highlight=False, soft_wrap=True)


@contextmanager
def _stages() -> Iterator[StageCallback]:
    """A stage callback that shows each long step as a spinner line with its elapsed time,
    on stderr so that stdout stays the path (or the JSON)."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    current: list[TaskID] = []

    def on_stage(label: str) -> None:
        if current:
            progress.update(current[-1], completed=1, total=1)
        else:
            progress.start()
        current.append(progress.add_task(label, total=None))

    try:
        yield on_stage
        if current:
            progress.update(current[-1], completed=1, total=1)
    except BaseException:
        if current:  # a frozen spinner would read as "still running"
            task = progress.tasks[-1]
            failed = f"[red]failed:[/] {task.description}"
            progress.update(task.id, description=failed, completed=1, total=1)
        raise
    finally:
        if current:
            progress.stop()
