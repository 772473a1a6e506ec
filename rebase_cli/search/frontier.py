"""Helpers every strategy shares: which nodes of a depth are open, and the final decisions."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rebase_cli.domain import Expansion, LevelDecision, NodeSnapshot
from rebase_cli.search.base import StrategyParams
from rebase_cli.search.shares import sequential_ceil


def is_finished(node: NodeSnapshot, max_path_tokens: int) -> bool:
    """True for a node that takes one unit of width instead of being expanded: it is terminal
    (answer, EOS, ...) or its path used at least `max_path_tokens` tokens."""
    return node.terminal or node.path_tokens >= max_path_tokens


def count_finished(nodes: Sequence[NodeSnapshot], max_path_tokens: int) -> int:
    """How many of `nodes` are finished; summed over earlier depths this is `finished_so_far`."""
    return sum(1 for node in nodes if is_finished(node, max_path_tokens))


def split_frontier(
    nodes: Sequence[NodeSnapshot], max_path_tokens: int, *, tie_order: str = "earlier-first"
) -> tuple[list[NodeSnapshot], int]:
    """The open nodes sorted best-first and the number of finished nodes.

    Score descending; equal scores by key ascending ("earlier-first"), or by key descending
    ("later-first": what a stable ascending sort of the key-ordered nodes, reversed, gives).
    Raises ValueError on an open node with a non-finite score."""
    open_nodes = []
    finished = 0
    for node in nodes:
        if is_finished(node, max_path_tokens):
            finished += 1
            continue
        if not math.isfinite(node.score):
            raise ValueError(f"node {node.key} has a non-finite score {node.score!r}")
        open_nodes.append(node)
    sign = -1 if tie_order == "later-first" else 1
    open_nodes.sort(key=lambda node: (-node.score, sign * node.key))
    return open_nodes, finished


def open_decision(
    open_nodes: Sequence[NodeSnapshot],
    weights: Sequence[float],
    counts: Sequence[int],
    remaining: int,
) -> LevelDecision:
    """A decision that goes on: open node i gets counts[i] children with share weights[i]."""
    expansions = tuple(
        Expansion(key=node.key, weight=weight, children=count)
        for node, weight, count in zip(open_nodes, weights, counts, strict=True)
    )
    return LevelDecision(expansions=expansions, remaining_width=remaining, stop=False)


def even_split(open_nodes: Sequence[NodeSnapshot], remaining: int) -> LevelDecision:
    """The width left split as evenly as it goes over the open nodes, earlier ones first, with
    uniform weights: a root's first expansion, where it is the only open node."""
    share = 1.0 / len(open_nodes)
    counts = sequential_ceil([1.0] * len(open_nodes), remaining)
    return open_decision(open_nodes, [share] * len(open_nodes), counts, remaining)


def stopped_decision(open_nodes: Sequence[NodeSnapshot], remaining: int) -> LevelDecision:
    """A final decision: every open node listed with weight 0 and no children."""
    expansions = tuple(Expansion(key=node.key, weight=0.0, children=0) for node in open_nodes)
    return LevelDecision(expansions=expansions, remaining_width=max(remaining, 0), stop=True)


def reached_max_depth(depth: int, max_depth: int | None) -> bool:
    """True when nodes at `depth` must not be expanded (the reference expands d < max_depth)."""
    return max_depth is not None and depth >= max_depth


def depth_limit_decision(
    nodes: Sequence[NodeSnapshot], *, width: int, max_path_tokens: int
) -> LevelDecision:
    """The decision at the depth limit: nobody gets children, width accounted as usual."""
    open_nodes, finished = split_frontier(nodes, max_path_tokens)
    return stopped_decision(open_nodes, width - finished)


class WidthStrategy:
    """The part every strategy shares: the width left is the budget minus the paths finished
    at earlier depths, and at the depth limit the frontier is closed. Subclasses say only how
    the remaining width is split (`allocate`)."""

    name = "abstract"

    def __init__(self, params: StrategyParams) -> None:
        self.params = params

    def decide(
        self,
        frontier: Sequence[NodeSnapshot],
        finished_so_far: int,
        depth: int,
        *,
        problem_index: int = 0,
    ) -> LevelDecision:
        width = self.params.width - finished_so_far
        if reached_max_depth(depth, self.params.max_depth):
            return depth_limit_decision(
                frontier, width=width, max_path_tokens=self.params.max_path_tokens
            )
        return self.allocate(frontier, width, depth, problem_index)

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:  # pragma: no cover - abstract
        """Split `width` over `frontier` at `depth`; `problem_index` seeds strategies that
        draw random numbers."""
        raise NotImplementedError
