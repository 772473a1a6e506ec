"""A rich progress display for a search: problems done/total, nodes/s, tokens/s, ETA."""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rebase_cli.domain import LevelCommit
from rebase_cli.store.models import ProblemRow


class ProgressEvents:
    """Implements runner.context.SearchEvents by updating one progress bar."""

    def __init__(self, console: Console, description: str) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("problems"),
            TextColumn("{task.fields[nodes_rate]:>7.1f} nodes/s"),
            TextColumn("{task.fields[tokens_rate]:>8.0f} tok/s"),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.description = description
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

    def started(self, problems: Sequence[ProblemRow]) -> None:
        self.started_at = time.monotonic()
        self.task = self.progress.add_task(
            self.description, total=len(problems), nodes_rate=0.0, tokens_rate=0.0, failed=0
        )

    def level_committed(self, problem: ProblemRow, level: LevelCommit) -> None:
        self.nodes += len(level.nodes)
        counters = level.counters
        self.tokens += counters.policy_prompt_tokens + counters.policy_completion_tokens
        self._refresh(advance=0)

    def problem_finished(self, problem: ProblemRow, status: str, error: str | None) -> None:
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
