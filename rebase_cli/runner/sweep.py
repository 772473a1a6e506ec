"""Sweeps: one `rebase search` over several budgets and methods, as a named group of runs.

The plan of a sweep (its `SweepSpec`) is stored with the group before the first run starts,
so the group can be finished later from its name alone: `rebase search --group NAME` walks the
plan again and, for each (method, budget), continues the group's run with that config, starts
it if a crash kept it from being created, or finds it done. Runs go one after another: each
run already keeps the servers busy with `--concurrency` problems at once, so running the
sweep's runs side by side would only split the same servers between them. API keys are never
part of the plan; they come from the options or environment of each invocation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from rebase_cli.datasets import FieldMap
from rebase_cli.errors import UsageError
from rebase_cli.runner.config import ConfigFile
from rebase_cli.runner.setup import RunRequest


def parse_list(text: str, option: str, kind: type = str) -> list[Any]:
    """'4,8,16' → [4, 8, 16] (duplicates dropped, order kept); a bad item is a UsageError.
    Text without a comma is one item, kept as given for the config to validate."""
    if "," not in text:
        try:
            return [kind(text)]
        except ValueError:
            raise UsageError(
                f"{option} {text!r}: not an integer", f"write it like {option} 8"
            ) from None
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise UsageError(f"{option} {text!r}: empty item", f"write it like {option} 4,8,16")
    try:
        values = [kind(item) for item in items]
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not a list of {'integers' if kind is int else 'names'}",
            f"write it like {option} 4,8,16",
        ) from None
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class SweepSpec:
    """Everything needed to (re)build each run request of a sweep, JSON-ready."""

    dataset: str
    methods: list[str]
    budgets: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)
    config_file: str | None = None
    question_field: str | None = None
    answer_field: str | None = None
    policy: str | None = None
    reward: str | None = None
    policy_model: str | None = None
    reward_model: str | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> SweepSpec:
        return cls(**data)

    def combinations(self) -> list[tuple[str | None, int | None]]:
        """(method, budget) of every run, methods outer, budgets ascending."""
        return [(m, b) for m in self.methods for b in sorted(self.budgets)]

    def run_requests(
        self, group: str, config_file: ConfigFile | None = None
    ) -> Iterator[tuple[str | None, int | None, RunRequest]]:
        """Each run's request; `config_file` is `self.config_file` as the command read it."""
        fields = (
            FieldMap(question=self.question_field, answer=self.answer_field)
            if self.question_field or self.answer_field
            else None
        )
        for method, budget in self.combinations():
            overrides = dict(self.overrides)
            if method is not None:
                overrides["method"] = method
            if budget is not None:
                overrides["budget"] = budget
            request = RunRequest(
                dataset=self.dataset,
                overrides=overrides,
                config_file=config_file,
                fields=fields,
                group=group,
            )
            yield method, budget, request
