"""`rebase grade FILE.jsonl --dataset NAME`: grade a file of model outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from rebase_cli.cli.common import console, err_console
from rebase_cli.grading import DEFAULT_TIMEOUT_S, GRADER_VERSION
from rebase_cli.grading.outputs import GradeReport, grade_outputs


def grade(
    file: Annotated[
        Path,
        typer.Argument(
            help="JSONL, one object per line: 'output' plus 'idx', 'question' or 'reference'.",
            show_default=False,
        ),
    ],
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="gsm8k, math500 or a JSONL path; needed when lines give 'idx' or 'question'.",
            show_default=False,
        ),
    ] = None,
    answer_regex: Annotated[
        str | None,
        typer.Option("--answer-regex", help="Extract the answer with this regex (group 1) first."),
    ] = None,
    last_number: Annotated[
        bool,
        typer.Option("--last-number", help="Fall back to the last number in the output."),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds allowed per comparison."),
    ] = DEFAULT_TIMEOUT_S,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON verdict per line.")
    ] = False,
) -> None:
    """Grade a JSONL file of model outputs and print the accuracy."""
    with Progress(
        TextColumn("grading"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        # Only on a terminal: a pipe or a log file gets no progress noise.
        disable=not err_console.is_terminal,
    ) as progress:
        task = progress.add_task("grading", total=None)
        report = grade_outputs(
            file,
            dataset,
            answer_regex=answer_regex,
            last_number_fallback=last_number,
            timeout_s=timeout,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if json_output:
        _print_json_lines(report)
    else:
        _print_summary(report)


def _print_json_lines(report: GradeReport) -> None:
    for result in report.results:
        row: dict[str, object] = {"line": result.line}
        if result.idx is not None:
            row["idx"] = result.idx
        if result.question is not None:
            row["question"] = result.question
        row.update(
            answer=result.extracted,
            reference=result.reference,
            correct=result.verdict.correct,
            reason=result.verdict.reason,
        )
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _print_summary(report: GradeReport) -> None:
    source = report.dataset or "references in the file"
    console.print(
        f"[bold]{report.path}[/]: {report.total:,} outputs graded against {source} "
        f"({report.style} grading, grader v{GRADER_VERSION})",
        highlight=False,
    )
    console.print(
        f"accuracy [bold]{report.accuracy:.1%}[/] ({report.correct:,} / {report.total:,})",
        highlight=False,
    )
    reasons = report.reasons()
    if reasons:
        table = Table("why incorrect", "outputs", box=None, pad_edge=False)
        for reason, count in reasons.most_common():
            table.add_row(reason, f"{count:,}")
        console.print(table)
