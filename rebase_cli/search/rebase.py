"""The REBASE allocation of one depth (DESIGN §4 steps 1-3), faithful to the reference code.

At each depth the open nodes share the width that is still left; terminal and over-length nodes
keep the unit of width their path already used. The shares follow softmax(score / T) and are
turned into whole child counts by walking the nodes best-first and rounding each share up:

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

from rebase_cli.domain import Expansion, LevelDecision, NodeSnapshot
from rebase_cli.search.frontier import (
    WidthStrategy,
    split_frontier,
    stopped_decision,
)


def softmax_weights(scores: Sequence[float], temperature: float) -> list[float]:
    """Unnormalised stable softmax weights exp((s - max) / T); the best weight is exactly 1."""
    if not temperature > 0:
        raise ValueError(f"balance temperature must be > 0, got {temperature!r}")
    top = max(scores)
    return [math.exp((score - top) / temperature) for score in scores]


def sequential_ceil(weights: Sequence[float], width: int) -> list[int]:
    """Walk `weights` in order giving ceil(W_left * w_i / sum_{j>=i} w_j) to each.

    Evaluated exactly: each float weight is an integer multiple of a common power of two, so
    the suffix sums and the ceilings are computed on Python integers. Invariants: every count is
    >= 0; the counts sum to `width` whenever width > 0 and some weight is positive; the first
    positive weight gets >= 1.
    """
    if width <= 0 or not weights:
        return [0] * len(weights)
    ratios = [w.as_integer_ratio() for w in weights]
    scale = max(den for _, den in ratios)  # every denominator is a power of two dividing it
    scaled = [num * (scale // den) for num, den in ratios]
    suffix = [0] * (len(scaled) + 1)
    for i in range(len(scaled) - 1, -1, -1):
        suffix[i] = suffix[i + 1] + scaled[i]
    counts = []
    left = width
    for i, weight in enumerate(scaled):
        if left <= 0 or weight <= 0:
            counts.append(0)
            continue
        count = -(-left * weight // suffix[i])  # exact ceil; <= left because weight <= suffix
        counts.append(count)
        left -= count
    return counts


def allocate_rebase(
    nodes: Sequence[NodeSnapshot],
    *,
    width: int,
    balance_temperature: float,
    max_path_tokens: int,
) -> LevelDecision:
    """The REBASE decision for the frontier `nodes` (all nodes of the current depth).

    `width` is the width left *before* this depth: the budget minus every terminal or
    over-length node at earlier depths (the reference keeps this as a running counter,
    `remaining_width`). This depth's finished nodes are subtracted here; the result's
    `remaining_width` is what is left after them (never negative), which is also the `width`
    to pass for the next depth.

    Returns one Expansion per open node, best first, with its softmax share (summing to 1) and
    child count; counts sum to `remaining_width`, and 0 means pruned. `stop` is True when no
    width or no open node is left; then every open node is listed with weight 0 and 0 children.
    """
    open_nodes, finished = split_frontier(nodes, max_path_tokens)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    weights = softmax_weights([node.score for node in open_nodes], balance_temperature)
    total = math.fsum(weights)
    counts = sequential_ceil(weights, remaining)
    expansions = tuple(
        Expansion(key=node.key, weight=weight / total, children=count)
        for node, weight, count in zip(open_nodes, weights, counts, strict=True)
    )
    return LevelDecision(expansions=expansions, remaining_width=remaining, stop=False)


class RebaseStrategy(WidthStrategy):
    """REBASE: `allocate_rebase` with the remaining width derived from `finished_so_far`."""

    name = "rebase"

    def allocate(self, frontier: Sequence[NodeSnapshot], width: int, depth: int) -> LevelDecision:
        return allocate_rebase(
            frontier,
            width=width,
            balance_temperature=self.params.balance_temperature,
            max_path_tokens=self.params.max_path_tokens,
        )
