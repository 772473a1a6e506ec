"""Small immutable records shared by every layer.

Nothing here does I/O. Strategies (`search/`), clients, the store and the services exchange
these values, which keeps each layer testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One benchmark problem. `index` is its 0-based position in the dataset file."""

    index: int
    source_id: str
    question: str
    reference_answer: str
    solution: str = ""
    subject: str | None = None
    level: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset; `sha256` is the checksum of the file's bytes."""

    name: str
    path: Path
    sha256: str
    problems: tuple[Problem, ...]

    def __len__(self) -> int:
        return len(self.problems)


class RunStatus(str, Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class ProblemRecord:
    """A stored problem of a run as a search needs it: `id` is the store's key for it,
    `dataset_index` its position in the dataset (what seeds and reports name it by)."""

    id: int
    dataset_index: int
    question: str


class ProblemStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class TerminalReason(str, Enum):
    """Why a node ends its path. None on a node means the path is still open."""

    ANSWER = "answer"
    EOS = "eos"
    MAX_TOKENS = "max_tokens"
    MAX_DEPTH = "max_depth"


@dataclass(frozen=True)
class NodeSnapshot:
    """What a search strategy may know about a node: no text, no I/O handles.

    `key` orders nodes deterministically (creation order within the problem); ties in score
    are broken by it, ascending. `lineage` is the key of the node's depth-1 ancestor (itself at
    depth 1; None for the root): which first step the path descends from, what DVTS groups its
    subtrees by.
    """

    key: int
    depth: int
    score: float
    terminal: bool
    path_tokens: int
    lineage: int | None = None


@dataclass(frozen=True)
class Expansion:
    """A strategy's decision for one node at one depth: its share (softmax share, resampling
    probability, or uniform share of a kept beam), its child count, and for strategies that
    split the budget into independent subtrees (DVTS) the subtree it belongs to."""

    key: int
    weight: float
    children: int
    subtree: int | None = None


@dataclass(frozen=True)
class LevelDecision:
    """The allocation of one depth. `expansions` covers every open node (children may be 0,
    which means pruned); `remaining_width` is the width left after terminal nodes took theirs;
    `stop` is True when the search of this problem is over."""

    expansions: tuple[Expansion, ...]
    remaining_width: int
    stop: bool

    @property
    def total_children(self) -> int:
        return sum(e.children for e in self.expansions)


@dataclass(frozen=True)
class Completion:
    """One choice returned by the policy for a step request.

    `eos`: the server said the model ended the sequence (vLLM's `stop_reason: null` with
    finish_reason "stop"); SGLang says it with an int `matched_stop` instead.
    `exact_tokens`: `completion_tokens` is the server's own count for this choice (token ids,
    or the usage of a one-choice reply), not a share of a summed usage."""

    text: str
    finish_reason: str
    matched_stop: str | int | None
    completion_tokens: int
    eos: bool = False
    exact_tokens: bool = True


@dataclass(frozen=True)
class StepBatch:
    """All choices for one parent, with the usage the server reported for the request(s)."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int
    requests: int
    retries: int = 0
    seeded: bool = True  # the seed was sent to a server that applies it


@dataclass(frozen=True)
class ScoreBatch:
    """Scores in [0, 1] for a sibling group, in the order the steps were given."""

    scores: tuple[float, ...]
    tokens: int
    requests: int
    retries: int = 0


@dataclass(frozen=True)
class NewNode:
    """A node of a problem's tree: a child to persist in a level commit, and a committed node
    as a store gives it back (equal to what was committed). `parent_ordinal` refers to the
    parent's ordinal at depth - 1 (None for the root); `ordinal` is its position within its
    depth."""

    depth: int
    ordinal: int
    parent_ordinal: int | None
    text: str
    score: float
    path_tokens: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    terminal_reason: TerminalReason | None = None
    answer: str | None = None
    seed: int | None = None

    @property
    def terminal(self) -> bool:
        return self.terminal_reason is not None


@dataclass(frozen=True)
class LevelCounters:
    """Usage added to a problem's counters by one level."""

    policy_prompt_tokens: int = 0
    policy_completion_tokens: int = 0
    reward_tokens: int = 0
    policy_requests: int = 0
    reward_requests: int = 0
    retries: int = 0


@dataclass(frozen=True)
class LevelCommit:
    """Everything one depth step of one problem writes, committed in one transaction.

    `allocations` are (parent_ordinal at depth-1, weight, children), optionally followed by the
    parent's subtree."""

    depth: int
    nodes: tuple[NewNode, ...]
    allocations: tuple[tuple[int, float, int] | tuple[int, float, int, int | None], ...] = ()
    counters: LevelCounters = field(default_factory=LevelCounters)
