"""`rebase report`, `rebase tree`, `rebase export`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rebase_cli.cli.common import console, err_console, open_existing_db
from rebase_cli.errors import UsageError
from rebase_cli.reports.accuracy import DEFAULT_DRAWS
from rebase_cli.reports.compute import parse_params
from rebase_cli.reports.grading_cache import Progress as ProgressCallback
from rebase_cli.store import repository
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


class TreeFormat(str, Enum):
    rich = "rich"
    dot = "dot"


class ExportFormat(str, Enum):
    jsonl = "jsonl"
    reference = "reference"


_SUFFIX_FORMATS = {
    ".json": ReportFormat.json,
    ".md": ReportFormat.markdown,
    ".markdown": ReportFormat.markdown,
    ".html": ReportFormat.html,
    ".htm": ReportFormat.html,
}


def report(
    runs: Annotated[
        list[str], typer.Argument(help="Runs: run-42, 42, a run name, or latest.", metavar="RUN...")
    ],
    fmt: Annotated[
        ReportFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format (default: from the --output suffix, else table).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw accuracy vs FLOPs to FILE.png or FILE.svg."),
    ] = None,
    policy_params: Annotated[
        str | None,
        typer.Option(help="Policy parameter count for FLOPs (7e9, 7B, 135M).", show_default=False),
    ] = None,
    reward_params: Annotated[
        str | None,
        typer.Option(help="Reward model parameter count for FLOPs.", show_default=False),
    ] = None,
    subsample_seed: Annotated[
        int | None,
        typer.Option(help="Seed of the subsampled budgets of sample runs (default: run seed)."),
    ] = None,
    subsample_draws: Annotated[
        int, typer.Option(min=1, max=1000, help="Draws averaged per subsampled budget.")
    ] = DEFAULT_DRAWS,
    compute_axis: Annotated[
        str,
        typer.Option(
            help="Plot's x axis: flops (ours: policy + reward FLOPs) or paper (policy "
            "generated tokens)."
        ),
    ] = "flops",
) -> None:
    """Accuracy under each answer-selection rule, compute and FLOPs, and the per-depth search
    view of one or more runs. Grading verdicts are cached in the database."""
    from rebase_cli.reports.build import ReportOptions, build_report

    chosen = fmt or (_SUFFIX_FORMATS.get(output.suffix.lower()) if output else None)
    chosen = chosen or ReportFormat.table
    if compute_axis not in ("flops", "paper"):
        raise UsageError(f"unknown --compute-axis {compute_axis!r}", "use flops or paper")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {plot}: unknown image type", "name the file .png or .svg")
    options = ReportOptions(
        policy_params=parse_params(policy_params) if policy_params else None,
        reward_params=parse_params(reward_params) if reward_params else None,
        subsample_seed=subsample_seed,
        subsample_draws=subsample_draws,
    )
    db = open_existing_db()
    try:
        resolved = _resolve_runs(db, runs)
        with _grading_progress() as progress:
            document = build_report(db, resolved, options, progress)
    finally:
        db.close()
    if plot is not None:
        from rebase_cli.reports.plot import write_plot

        write_plot(document, plot, compute_axis)
        err_console.print(f"plot written to {plot}", highlight=False)
    _emit(document, chosen, output)


def _emit(document: dict, fmt: ReportFormat, output: Path | None) -> None:
    if fmt is ReportFormat.table and output is None:
        from rebase_cli.reports.render_table import renderables

        for item in renderables(document):
            console.print(item)
        return
    if fmt is ReportFormat.table:
        from rebase_cli.reports.render_table import render_text

        text = render_text(document)
    elif fmt is ReportFormat.json:
        from rebase_cli.reports.render_json import render_json

        text = render_json(document)
    elif fmt is ReportFormat.markdown:
        from rebase_cli.reports.render_markdown import render_markdown

        text = render_markdown(document)
    else:
        from rebase_cli.reports.render_html import render_html

        text = render_html(document)
    _write(text, output)


def tree(
    run: Annotated[str, typer.Argument(help="run-42, 42, a run name, or latest.")],
    problem: Annotated[int, typer.Argument(help="The problem's 0-based dataset index.", min=0)],
    depth: Annotated[
        int | None, typer.Option("--depth", "-d", min=0, help="Show nodes down to depth D.")
    ] = None,
    fmt: Annotated[TreeFormat, typer.Option("--format", "-f", help="rich or dot.")] = (
        TreeFormat.rich
    ),
) -> None:
    """Show the search tree of one problem: scores, children given, answers and verdicts."""
    from rebase_cli.reports.tree_view import dot_graph, load_problem_tree, rich_tree

    db = open_existing_db()
    try:
        loaded = load_problem_tree(db, repository.resolve_run(db, run), problem)
    finally:
        db.close()
    if fmt is TreeFormat.dot:
        _write(dot_graph(loaded, depth), None)
    else:
        console.print(rich_tree(loaded, depth))


def export(
    run: Annotated[str, typer.Argument(help="run-42, 42, a run name, or latest.")],
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="jsonl (one record per problem) or reference (the paper code's answers.json).",
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Export a run's finished answers with their step scores and verdicts."""
    from rebase_cli.reports.export import export_run

    db = open_existing_db()
    try:
        resolved = repository.resolve_run(db, run)
        with _grading_progress() as progress:
            if output is None:
                export_run(db, resolved, fmt.value, sys.stdout, progress)
                sys.stdout.flush()
                return
            with _open_output(output) as handle:
                written = export_run(db, resolved, fmt.value, handle, progress)
    finally:
        db.close()
    err_console.print(f"exported {written} problems of run-{resolved.id} to {output}")


def _resolve_runs(db: Database, refs: list[str]) -> list[Run]:
    resolved: dict[int, Run] = {}
    for ref in refs:
        run = repository.resolve_run(db, ref)
        resolved.setdefault(run.id or 0, run)
    return list(resolved.values())


@contextmanager
def _grading_progress() -> Iterator[ProgressCallback]:
    """A callback that shows a progress bar on stderr once grading starts (cached reports,
    which grade nothing, show none)."""
    bar: Progress | None = None
    task = None

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            bar = Progress(
                TextColumn("grading answers"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            )
            bar.start()
            task = bar.add_task("grading", total=total)
        bar.update(task, completed=done, total=total)  # type: ignore[arg-type]

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


@contextmanager
def _open_output(path: Path) -> Iterator:
    try:
        handle = path.open("w", encoding="utf-8")
    except OSError as exc:
        message = f"cannot write {path}: {exc.strerror}"
        raise UsageError(message, "choose another --output") from None
    with handle:
        yield handle


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with _open_output(output) as handle:
        handle.write(text)
    err_console.print(f"report written to {output}", highlight=False)
