"""The REBASE allocation of one depth (DESIGN §4 steps 1-3), faithful to the reference code.

At each depth the open nodes share the width that is still left; terminal and over-length nodes
keep the unit of width their path already used. The shares follow softmax(score / T) and are
turned into whole child counts (by default, as the authors' code does, by walking the nodes
best-first and rounding each share up; see `shares` for the paper's rounding):

    n_i = ceil(W_left * w_i / sum_{j >= i} w_j),  W_left -= n_i

The ceilings are evaluated exactly (integer arithmetic on the float64 weights), so no rounding
noise can add or drop a child and the counts always sum to the width left. The rule is not
proportional (ceil favours the nodes walked first), but evaluated exactly it never gives a node
more children than a better node before it: x_{i+1} <= W_i w_{i+1} / S_i <= W_i w_i / S_i <= n_i.
(The reference's float32 running sum can break that by rounding noise; the rule is the same.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_cli.domain import LevelDecision, NodeSnapshot
from rebase_cli.search.base import ShareRounding, TieOrder
from rebase_cli.search.frontier import (
    WidthStrategy,
    open_decision,
    split_frontier,
    stopped_decision,
)
from rebase_cli.search.shares import (
    rounded_shares,
    sequential_ceil,
    truncated_count,
)

__all__ = ["RebaseStrategy", "allocate_rebase", "sequential_ceil", "softmax_weights"]


def softmax_weights(scores: Sequence[float], temperature: float) -> list[float]:
    """Unnormalised stable softmax weights exp((s - max) / T); the best weight is exactly 1."""
    if not temperature > 0:
        raise ValueError(f"balance temperature must be > 0, got {temperature!r}")
    top = max(scores)
    return [math.exp((score - top) / temperature) for score in scores]


def allocate_rebase(
    nodes: Sequence[NodeSnapshot],
    *,
    width: int,
    balance_temperature: float,
    max_path_tokens: int,
    tie_order: TieOrder = "earlier-first",
    share_rounding: ShareRounding = "sequential-ceil",
    truncate_ratio: float | None = None,
) -> LevelDecision:
    """The REBASE decision for the frontier `nodes` (all nodes of the current depth).

    `width` is the width left *before* this depth: the budget minus every terminal or
    over-length node at earlier depths (the reference keeps this as a running counter,
    `remaining_width`). This depth's finished nodes are subtracted here; the result's
    `remaining_width` is what is left after them (never negative), which is also the `width`
    to pass for the next depth.

    Returns one Expansion per open node, best first (equal scores ordered by `tie_order`),
    with its softmax share and child count; 0 children means pruned. With `truncate_ratio`
    (`softmax_with_truncate`) only the best `truncated_count` nodes share the width and carry
    weight; the rest get weight 0. With `share_rounding` "sequential-ceil" the counts sum to
    `remaining_width`; with "round" (the paper's formula) each is its rounded share. `stop` is
    True when no width or no open node is left; then every open node is listed with weight 0
    and 0 children.
    """
    open_nodes, finished = split_frontier(nodes, max_path_tokens, tie_order=tie_order)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    kept = len(open_nodes)
    if truncate_ratio is not None:
        kept = truncated_count(len(open_nodes), truncate_ratio)
    weights = softmax_weights([node.score for node in open_nodes[:kept]], balance_temperature)
    total = math.fsum(weights)
    if share_rounding == "round":
        counts = rounded_shares(weights, remaining)
    else:
        counts = sequential_ceil(weights, remaining)
    pruned = len(open_nodes) - kept
    shares = [weight / total for weight in weights] + [0.0] * pruned
    return open_decision(open_nodes, shares, [*counts, *[0] * pruned], remaining)


class RebaseStrategy(WidthStrategy):
    """REBASE: `allocate_rebase` with the remaining width derived from `finished_so_far`."""

    name = "rebase"

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:
        params = self.params
        return allocate_rebase(
            frontier,
            width=width,
            balance_temperature=params.balance_temperature,
            max_path_tokens=params.max_path_tokens,
            tie_order=params.tie_order,
            share_rounding=params.share_rounding,
            truncate_ratio=params.truncate_ratio,
        )
