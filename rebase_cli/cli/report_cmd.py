"""`rebase report`, `rebase tree`, `rebase export`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rebase_cli.cli.common import console, err_console, open_existing_db, with_db
from rebase_cli.errors import UsageError
from rebase_cli.reports.defaults import (
    DEFAULT_DRAWS,
    DEFAULT_RESAMPLES,
    DEFAULT_RULES,
    DEFAULT_STATS_SEED,
)

if TYPE_CHECKING:  # the reports and the store pull in numpy and sqlalchemy: not for `--help`
    from rebase_cli.records import RunRecord
    from rebase_cli.reports.grading_cache import Progress as ProgressCallback
    from rebase_cli.store.reader import RunReader


class ReportFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    html = "html"


class ComputeAxis(str, Enum):
    flops = "flops"
    paper = "paper"
    tokens = "tokens"
    seconds = "seconds"


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
        list[str],
        typer.Argument(
            help="Runs: run-42, 42, a run name, latest, or a group (all its runs).",
            metavar="RUN|GROUP...",
        ),
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
        typer.Option("--plot", help="Also draw accuracy vs compute to FILE.png or FILE.svg."),
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
    rules: Annotated[
        str,
        typer.Option(
            help="Selection rules the plot and comparison tables show, comma-separated "
            "(majority, weighted_<agg>, best_of_n_<agg>; agg: last, min, prod, mean)."
        ),
    ] = ",".join(DEFAULT_RULES),
    compute_axis: Annotated[
        ComputeAxis,
        typer.Option(
            help="x axis of the plot, curves and frontier: flops (policy + reward FLOPs), paper "
            "(policy generated tokens), tokens (policy + reward tokens) or seconds (search time)."
        ),
    ] = ComputeAxis.flops,
    ci_seed: Annotated[
        int, typer.Option(help="Seed of the bootstrap intervals.")
    ] = DEFAULT_STATS_SEED,
    ci_resamples: Annotated[
        int, typer.Option(min=100, max=100_000, help="Bootstrap resamples per interval.")
    ] = DEFAULT_RESAMPLES,
    scores: Annotated[
        str | None,
        typer.Option(
            help="Select answers with this score set (from `rebase rescore`) instead of the "
            "search's own PRM scores.",
            show_default=False,
        ),
    ] = None,
    details: Annotated[
        bool,
        typer.Option(
            "--details",
            help="With several runs, also print each run's own tables (files always have them).",
        ),
    ] = False,
) -> None:
    """Accuracy under each answer-selection rule, compute and FLOPs, and the per-depth search
    view of one or more runs. Grading verdicts are cached in the database."""
    from rebase_cli.reports.build import ReportOptions, build_report
    from rebase_cli.reports.compute import parse_params
    from rebase_cli.reports.selection import parse_rules
    from rebase_cli.reports.statistics import StatsOptions
    from rebase_cli.store.reader import RunReader

    chosen = fmt or (_SUFFIX_FORMATS.get(output.suffix.lower()) if output else None)
    chosen = chosen or ReportFormat.table
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {plot}: unknown image type", "name the file .png or .svg")
    check_output(output)
    check_output(plot, "--plot")
    options = ReportOptions(
        policy_params=parse_params(policy_params) if policy_params else None,
        reward_params=parse_params(reward_params) if reward_params else None,
        subsample_seed=subsample_seed,
        subsample_draws=subsample_draws,
        stats=StatsOptions(seed=ci_seed, resamples=ci_resamples),
        rules=parse_rules(rules),
        x_axis=compute_axis.value,
        scores=scores,
    )
    db = open_existing_db()
    try:
        resolved = _resolve_runs(RunReader(db), runs)
        with _grading_progress() as progress:
            document = build_report(db, resolved, options, progress)
    finally:
        db.close()
    if plot is not None:
        from rebase_cli.reports.plot import write_plot

        write_plot(document, plot)
        err_console.print(f"plot written to {plot}", highlight=False)
    _emit(document, chosen, output, details)
    if chosen is ReportFormat.table and output is None and len(resolved) > 1 and not details:
        refs = " ".join(f"run-{run.id}" for run in resolved)
        err_console.print(
            with_db(f"each run's own tables: rebase report {refs} --details"),
            highlight=False,
            soft_wrap=True,
        )


def _emit(document: dict, fmt: ReportFormat, output: Path | None, details: bool = True) -> None:
    if fmt is ReportFormat.table and output is None:
        from rebase_cli.reports.render_table import renderables

        for item in renderables(document, details):
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
        int | None, typer.Option("--depth", min=0, help="Show nodes down to depth D.")
    ] = None,
    fmt: Annotated[TreeFormat, typer.Option("--format", "-f", help="rich or dot.")] = (
        TreeFormat.rich
    ),
) -> None:
    """Show the search tree of one problem: scores, children given, answers and verdicts."""
    from rebase_cli.reports.tree_view import dot_graph, load_problem_tree, rich_tree
    from rebase_cli.store.reader import RunReader

    db = open_existing_db()
    try:
        loaded = load_problem_tree(db, RunReader(db).resolve(run), problem)
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
    from rebase_cli.store.reader import RunReader

    check_output(output)
    db = open_existing_db()
    try:
        resolved = RunReader(db).resolve(run)
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


def _resolve_runs(reader: RunReader, refs: list[str]) -> list[RunRecord]:
    """Runs by reference, a group name standing for its runs (oldest first); each run once."""
    resolved: dict[int, RunRecord] = {}
    for ref in refs:
        members = reader.group_runs(ref)
        for run in members if members is not None else [reader.resolve(ref)]:
            resolved.setdefault(run.id, run)
    if not resolved:
        raise UsageError(
            f"group {refs[0]!r} has no runs yet", f"run: rebase search --group {refs[0]}"
        )
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


def check_output(path: Path | None, option: str = "--output") -> None:
    """Refuse an output path that cannot be created, before any work (grading caches its
    verdicts in the database) is done for it."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a folder", f"name a file for {option}")
    if not path.parent.is_dir():
        raise UsageError(
            f"cannot write {path}: folder {path.parent} does not exist",
            f"create it or choose another {option}",
        )


@contextmanager
def _open_output(path: Path) -> Iterator:
    """`path` open for writing; any OS error while opening, writing or closing it (a full
    disk, /dev/full) is one UsageError, and a partly written regular file is removed."""
    try:
        with path.open("w", encoding="utf-8") as handle:
            yield handle
    except OSError as exc:
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"cannot write {path}: {reason}", "free space or choose another --output"
        ) from None


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    with _open_output(output) as handle:
        handle.write(text)
    err_console.print(f"report written to {output}", highlight=False)
