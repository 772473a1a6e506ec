"""What every problem search of a run shares: config, template, strategy, clients, sinks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from rebase_cli.domain import LevelCommit, ProblemRecord, StepBatch
from rebase_cli.errors import ConfigError
from rebase_cli.grading import extract_answer
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.config import SearchConfig
from rebase_cli.runner.steps import ended_at_delimiter
from rebase_cli.search.base import Strategy
from rebase_cli.store.search_store import SearchStore


class SearchEvents(Protocol):
    """Progress notifications (the CLI draws a progress bar from them)."""

    def started(self, problems: Sequence[ProblemRecord]) -> None: ...

    def level_committed(self, problem: ProblemRecord, level: LevelCommit) -> None: ...

    def problem_finished(self, problem: ProblemRecord, status: str, error: str | None) -> None: ...


class NoEvents:
    def started(self, problems: Sequence[ProblemRecord]) -> None:
        pass

    def level_committed(self, problem: ProblemRecord, level: LevelCommit) -> None:
        pass

    def problem_finished(self, problem: ProblemRecord, status: str, error: str | None) -> None:
        pass


class DelimiterMonitor:
    """Detects a policy that never ends a step at the template's delimiter (a wrong template).

    After `threshold` completions with no step end and no answer, the run stops with a hint
    instead of burning the budget on paths that are one long step each."""

    def __init__(self, threshold: int = 32) -> None:
        self.threshold = threshold
        self.completions = 0
        self.step_ends = 0

    def observe(self, batches: Sequence[StepBatch], template: PromptTemplate) -> None:
        if self.step_ends:
            return
        for batch in batches:
            for completion in batch.completions:
                self.completions += 1
                # A policy that writes a whole solution per call still shows the template
                # works if its text carries the template's answer.
                answer = extract_answer(completion.text, answer_regex=template.answer_regex)
                if ended_at_delimiter(completion, template) or answer is not None:
                    self.step_ends += 1
        if self.completions >= self.threshold and self.step_ends == 0:
            delimiter = template.next_step_stop or template.step_delimiter
            raise ConfigError(
                f"the policy never ended a step with the delimiter {delimiter!r} "
                f"of template {template.name!r} in {self.completions} completions",
                "pick the template that matches the model with --template "
                "(`rebase search --help` lists them)",
            )


@dataclass
class SearchContext:
    """`store` is bound to the run and to this process's lease owner id."""

    store: SearchStore
    config: SearchConfig
    template: PromptTemplate
    strategy: Strategy
    policy: object
    reward: object
    events: SearchEvents
    monitor: DelimiterMonitor
    # Scores whole paths (whole-solution sampling); None for the step-by-step methods.
    path_scorer: object | None = None

    @property
    def run_id(self) -> int:
        return self.store.run_id
