"""Step-level beam search: keep the N/M best open nodes, expand each M ways.

N is the width left (the budget minus paths already finished, exactly as in REBASE) and M the
expansion factor. At depth 0 the root gets all N children, so the first scored level has N
candidates to choose the beam from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_cli.domain import LevelDecision, NodeSnapshot
from rebase_cli.search.frontier import (
    WidthStrategy,
    open_decision,
    split_frontier,
    stopped_decision,
)
from rebase_cli.search.rebase import sequential_ceil


def allocate_beam(
    nodes: Sequence[NodeSnapshot],
    *,
    width: int,
    expansion: int,
    max_path_tokens: int,
    depth: int,
    tie_order: str = "earlier-first",
) -> LevelDecision:
    """The beam decision for the frontier `nodes` at `depth`.

    `width` has the meaning of `allocate_rebase`'s. Deeper than 0, the ceil(W / M) best open
    nodes (score descending, equal scores by `tie_order`) are kept and get M children each, the
    last one fewer so the total never exceeds W; the rest are pruned. With fewer open nodes than
    that the beam is simply smaller. Kept nodes share weight uniformly, pruned ones have weight 0.
    """
    if expansion < 1:
        raise ValueError(f"beam expansion must be >= 1, got {expansion}")
    open_nodes, finished = split_frontier(nodes, max_path_tokens, tie_order=tie_order)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    if depth == 0:
        counts = sequential_ceil([1.0] * len(open_nodes), remaining)
    else:
        keep = math.ceil(remaining / expansion)
        counts, left = [], remaining
        for rank in range(len(open_nodes)):
            count = min(expansion, left) if rank < keep else 0
            counts.append(count)
            left -= count
    kept = sum(1 for count in counts if count > 0)
    weights = [1.0 / kept if count else 0.0 for count in counts]
    return open_decision(open_nodes, weights, counts, remaining)


class BeamStrategy(WidthStrategy):
    """Beam search with beam N / M and expansion M."""

    name = "beam"

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:
        return allocate_beam(
            frontier,
            width=width,
            expansion=self.params.beam_expansion,
            max_path_tokens=self.params.max_path_tokens,
            depth=depth,
            tie_order=self.params.tie_order,
        )
