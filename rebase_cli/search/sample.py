"""The `sample` baseline: N independent solutions, grown one scored step at a time.

The root gets all N children at depth 0; after that every open node gets exactly one child, so
each of the N paths continues alone until it finishes. Steps are still scored by the PRM, which
is what weighted voting over these paths needs.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_cli.domain import LevelDecision, NodeSnapshot
from rebase_cli.search.frontier import (
    WidthStrategy,
    even_split,
    open_decision,
    split_frontier,
    stopped_decision,
)


def allocate_sample(
    nodes: Sequence[NodeSnapshot], *, width: int, max_path_tokens: int, depth: int
) -> LevelDecision:
    """The sample decision for the frontier `nodes` at `depth`.

    `width` has the meaning of `allocate_rebase`'s. At depth 0 the width is split evenly over the
    open nodes (the root alone gets all of it); deeper, each open node gets one child, in key
    order, never more in total than the width left (which the invariant open == width keeps
    from binding). Weights are uniform over open nodes.
    """
    open_nodes, finished = split_frontier(nodes, max_path_tokens)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    open_nodes.sort(key=lambda node: node.key)
    if depth == 0:
        return even_split(open_nodes, remaining)
    counts = [1 if i < remaining else 0 for i in range(len(open_nodes))]
    return open_decision(open_nodes, [1.0 / len(open_nodes)] * len(open_nodes), counts, remaining)


class SampleStrategy(WidthStrategy):
    """Independent sampling with per-step scores."""

    name = "sample"

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:
        return allocate_sample(
            frontier, width=width, max_path_tokens=self.params.max_path_tokens, depth=depth
        )
