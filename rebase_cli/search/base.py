"""What every search strategy is: a pure function from a depth's nodes to a LevelDecision.

A strategy sees frozen `NodeSnapshot`s (no text, no I/O) and the count of paths that already
finished at earlier depths; it returns how many children each open node gets. Because it keeps
no state, a resumed search asks it the same questions and gets the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rebase_cli.domain import LevelDecision, NodeSnapshot

# Equal scores: the earlier-created node first (ours), or the later one first (the authors'
# stable ascending sort, then reversed).
TieOrder = Literal["earlier-first", "later-first"]
# How shares become child counts: the authors' sequential ceiling, or the paper's Round(W * p).
ShareRounding = Literal["sequential-ceil", "round"]


@dataclass(frozen=True)
class StrategyParams:
    """Search parameters shared by the strategies (reference defaults).

    Built by `SearchConfig.strategy_params()` from a validated config (the config's names
    differ: `budget` is `width`, `max_tokens` is `max_path_tokens`); nothing here checks the
    values again, so one built by hand must respect the config's bounds.
    `width` is the budget N (paths per problem). `max_depth` None means unbounded.
    `beam_expansion` is M of beam search (each kept node gets M children, N/M nodes kept) and
    of DVTS (N/M subtrees expanded M ways). `tie_order`, `share_rounding` and `truncate_ratio`
    (None: no truncation) shape REBASE's allocation (see `search.rebase` and `search.shares`).
    `particle_temperature` is T of particle filtering's resampling weights softmax(score / T);
    `seed` is the run seed its draws derive from."""

    width: int
    balance_temperature: float = 0.2
    max_path_tokens: int = 1024
    max_depth: int | None = 25
    beam_expansion: int = 4
    tie_order: TieOrder = "earlier-first"
    share_rounding: ShareRounding = "sequential-ceil"
    truncate_ratio: float | None = None
    particle_temperature: float = 0.2
    seed: int = 0


class Strategy(Protocol):
    """A search strategy. `decide` must be a pure function of its arguments and params."""

    name: str
    params: StrategyParams

    def decide(
        self,
        frontier: Sequence[NodeSnapshot],
        finished_so_far: int,
        depth: int,
        *,
        problem_index: int = 0,
    ) -> LevelDecision:
        """The decision for depth `depth` whose nodes are `frontier`.

        `problem_index` (the problem's dataset index) is what a strategy that draws random
        numbers derives them from, with `params.seed` and `depth`; the others ignore it.

        `finished_so_far` counts the nodes at depths < `depth` that were terminal or over the
        path token limit (each used one unit of width). The width left for this depth is
        `params.width - finished_so_far` before this depth's own finished nodes are subtracted;
        the decision's `remaining_width` is after them, so the caller may carry
        `finished_so_far += decision_finished` forward or recount from stored nodes on resume.
        """
        ...
