"""What the store's reader (`store/reader.py`) hands to the reports and the run commands.

Every record is immutable and names its fields; none carries a database session or a row
object, so the reports work on plain values and never see SQL. A run's bulk tables (problems
and nodes) are columns: numpy arrays and lists aligned by position, because a large run holds
half a million nodes and an object per node would cost more than reading them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING

from rebase_cli.domain import LevelCounters

if TYPE_CHECKING:  # the run commands read records without paying for numpy's import
    import numpy as np

COUNTERS = tuple(f.name for f in fields(LevelCounters))
"""The per-problem cost counters (the problem table's columns of those names), in the order
the reports list them."""


@dataclass(frozen=True)
class RunRecord:
    """A run as it was stored (its lease is the search's business and is left out)."""

    id: int
    name: str | None
    method: str
    dataset: str
    dataset_sha256: str
    budget: int
    config_json: str
    fingerprint: str
    policy_url: str | None
    policy_model: str | None
    reward_url: str | None
    reward_model: str | None
    reward_protocol: str | None
    capabilities_json: str | None
    simulated: bool
    seed: int
    status: str
    wall_seconds: float
    created_at: datetime
    updated_at: datetime
    group_name: str | None

    @property
    def config(self) -> dict:
        """The stored config as a dict ({} when it is missing or not a JSON object)."""
        try:
            config = json.loads(self.config_json or "{}")
        except ValueError:
            return {}
        return config if isinstance(config, dict) else {}


@dataclass(frozen=True)
class RunListing:
    """A run with its problem counts by status (statuses with no problem are absent)."""

    run: RunRecord
    problems: Mapping[str, int]


@dataclass(frozen=True)
class RunTotals:
    """Problem counts by status, node and answer counts, and the cost counters of a run;
    `pending` counts problems not yet finished (pending or running)."""

    problems: int
    done: int
    failed: int
    pending: int
    nodes: int
    finished_answers: int
    policy_prompt_tokens: int
    policy_completion_tokens: int
    reward_tokens: int
    policy_requests: int
    reward_requests: int
    retries: int


@dataclass(frozen=True)
class ScoreSetRecord:
    """A named score set of a run: another PRM's scores of its nodes."""

    id: int
    run_id: int
    name: str
    reward_url: str
    reward_model: str | None
    reward_protocol: str
    status: str
    error: str | None


@dataclass(frozen=True)
class Coverage:
    """How many of a run's nodes below the roots a score set scores, out of `total`."""

    scored: int
    total: int


@dataclass(frozen=True)
class ProblemRecord:
    """One problem of a run: `index` is its dataset index."""

    id: int
    index: int
    source_id: str
    question: str
    reference: str
    status: str
    error: str | None
    policy_prompt_tokens: int
    policy_completion_tokens: int
    reward_tokens: int


@dataclass(frozen=True)
class NodeRecord:
    """A stored node; the root (depth 0) has no parent, no text and score 1.0."""

    id: int
    parent_id: int | None
    depth: int
    ordinal: int
    text: str
    score: float
    terminal: bool
    terminal_reason: str | None
    answer: str | None


@dataclass(frozen=True)
class NodeAllocation:
    """The decision recorded on one open node: children (or resampled copies) given, its
    share `weight`, and its DVTS subtree (None for other methods)."""

    children: int
    weight: float
    subtree: int | None


@dataclass(frozen=True)
class ProblemNodes:
    """A problem and its nodes in (depth, ordinal) order."""

    problem: ProblemRecord
    nodes: tuple[NodeRecord, ...]


@dataclass(frozen=True)
class ProblemTreeRecord:
    """A problem's nodes in (depth, ordinal) order and the decisions on them by node id,
    read in one transaction, so every allocation names a node that is among `nodes`."""

    problem: ProblemRecord
    nodes: tuple[NodeRecord, ...]
    allocations: Mapping[int, NodeAllocation]


@dataclass(frozen=True)
class ProblemTable:
    """The run's problems in dataset order; every sequence is aligned with `index`."""

    ids: np.ndarray
    index: np.ndarray
    reference: list[str]
    subject: list[str | None]
    level: list[int | None]
    status: list[str]
    error: list[str | None]
    depth_completed: np.ndarray
    counters: dict[str, np.ndarray]
    elapsed_seconds: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class NodeTable:
    """Every node of a run, in no particular order, as aligned columns. `parent` is -1 for
    the roots; `problem` is the position of the node's problem in the run's ProblemTable."""

    id: np.ndarray
    parent: np.ndarray
    problem: np.ndarray
    score: np.ndarray
    depth: np.ndarray
    ordinal: np.ndarray
    terminal: np.ndarray
    answer: np.ndarray
    """An object array: the answer text, or None."""

    def __len__(self) -> int:
        return int(self.id.shape[0])


@dataclass(frozen=True)
class AllocationDepth:
    """Totals of the allocation rows recorded at one depth across the run's problems."""

    depth: int
    open: int
    expanded: int
    pruned: int
    children: int
    problems: int


@dataclass(frozen=True)
class RunTables:
    """Everything a report reads about a run, read in one transaction."""

    problems: ProblemTable
    nodes: NodeTable
    allocations: list[AllocationDepth] = field(default_factory=list)
