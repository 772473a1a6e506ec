"""The report as rich tables for the terminal (or plain text for a file)."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from rebase_cli.reports.sections import RunView, TableView, run_views


def renderables(document: dict, details: bool = True) -> list[RenderableType]:
    """Everything to print: the comparison of several runs, then (with `details`) each run."""
    out: list[RenderableType] = []
    for view in run_views(document, details):
        out.append(_run(view))
    return out


def render_text(document: dict, width: int = 120) -> str:
    """The same tables as plain text (no colour), for --output FILE."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, color_system=None)
    for item in renderables(document):
        console.print(item)
    return buffer.getvalue()


def _run(view: RunView) -> RenderableType:
    parts: list[RenderableType] = [Text(view.heading, style="bold")]
    for label in view.labels:
        parts.append(Text(label, style="bold red"))
    facts = Table.grid(padding=(0, 2))
    for key, value in view.facts:
        facts.add_row(Text(key, style="dim"), Text(value))
    parts.append(facts)
    for table in view.tables:
        parts.append(_table(table))
        if table.note:
            # Below the table rather than as its caption, which rich wraps to the table's width.
            parts.append(Text(table.note, style="dim"))
    parts.append(Text(""))
    return Group(*parts)


def _table(view: TableView) -> Table:
    # No vertical rules and one space between columns, so that the widest table (per depth)
    # fits 80 columns; a column is never narrower than the longest word of its header, so a
    # squeezed table folds values rather than splitting `problems` into `proble/ms`.
    table = Table(
        title=view.title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for i, column in enumerate(view.columns):
        table.add_column(
            column,
            justify="left" if i < view.left else "right",
            overflow="fold",
            no_wrap=i == 0,
            min_width=max((len(word) for word in column.split()), default=1),
        )
    for row in view.rows:
        # An interval goes under its accuracy: four rule columns then fit in 80 columns.
        table.add_row(*(cell.replace("% [", "%\n[") for cell in row))
    return table
