"""`rebase datasets list|download NAME`."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from rebase_cli.cli.common import console, print_json
from rebase_cli.datasets import KNOWN_DATASETS, dataset_listing, download, resolve_known
from rebase_cli.errors import DatasetError

app = typer.Typer(help="Find, verify and download benchmark datasets.", no_args_is_help=True)


@app.command("list")
def list_cmd(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Show the known datasets, where they are, their size and checksum status."""
    infos = dataset_listing()
    if json_output:
        print_json([dataclasses.asdict(info) for info in infos])
        return
    table = Table("name", "problems", "checksum", "path", "description")
    for info in infos:
        style = {"ok": "green", "mismatch": "red", "missing": "yellow"}[info.checksum]
        count = "-" if info.count is None else f"{info.count:,}"
        table.add_row(
            info.name,
            count,
            f"[{style}]{info.checksum}[/]",
            info.path or "-",
            info.description,
        )
    console.print(table)


@app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="gsm8k or math500.")],
) -> None:
    """Download NAME into the user cache (checksum verified); no-op if already present."""
    if name not in KNOWN_DATASETS:
        raise DatasetError(f"unknown dataset {name!r}", f"known: {', '.join(KNOWN_DATASETS)}")
    try:
        path = resolve_known(name, allow_download=False)
        typer.echo(f"{name} is already here: {path}")
    except DatasetError:
        path = download(name)
        typer.echo(f"downloaded {name} to {path}")
