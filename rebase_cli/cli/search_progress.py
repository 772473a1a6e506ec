"""A rich progress display for a search: problems done/total, nodes/s, tokens/s, ETA."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rebase_cli.domain import LevelCommit, ProblemRecord

# Below this width the rates are left out so that count, elapsed time and ETA stay on the line.
WIDE = 110


def _columns(width: int) -> list[ProgressColumn]:
    """The progress line's columns: the whole set on a wide terminal; at 80 columns (a pipe, a
    log file, many terminals) the bar shrinks and the rates go, never the total or the ETA."""
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=None if width >= WIDE else 12),
        MofNCompleteColumn(),
        TextColumn("problems"),
    ]
    if width >= WIDE:
        columns += [
            TextColumn("{task.fields[nodes_rate]:>7.1f} nodes/s"),
            TextColumn("{task.fields[tokens_rate]:>8.0f} tok/s"),
        ]
    columns += [
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    return columns


class ProgressEvents:
    """Implements runner.context.SearchEvents by updating one progress bar."""

    def __init__(self, console: Console, description: str, run_total: int | None = None) -> None:
        self.progress = Progress(*_columns(console.width), console=console, transient=False)
        self.description = description
        self.run_total = run_total
        self.task = None
        self.nodes = 0
        self.tokens = 0
        self.failed = 0
        self.started_at = time.monotonic()

    def __enter__(self) -> ProgressEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def started(self, problems: Sequence[ProblemRecord]) -> None:
        self.started_at = time.monotonic()
        # A resumed run counts against its whole size: the problems finished before count as
        # done from the start (the rates and ETA cover only this session's work).
        total = max(self.run_total or 0, len(problems))
        self.task = self.progress.add_task(
            self.description,
            total=total,
            completed=total - len(problems),
            nodes_rate=0.0,
            tokens_rate=0.0,
            failed=0,
        )

    def level_committed(self, problem: ProblemRecord, level: LevelCommit) -> None:
        self.nodes += len(level.nodes)
        counters = level.counters
        self.tokens += counters.policy_prompt_tokens + counters.policy_completion_tokens
        self._refresh(advance=0)

    def problem_finished(self, problem: ProblemRecord, status: str, error: str | None) -> None:
        if status == "failed":
            self.failed += 1
        self._refresh(advance=1)

    def _refresh(self, advance: int) -> None:
        if self.task is None:
            return
        elapsed = max(time.monotonic() - self.started_at, 1e-6)
        self.progress.update(
            self.task,
            advance=advance,
            nodes_rate=self.nodes / elapsed,
            tokens_rate=self.tokens / elapsed,
            failed=self.failed,
        )
