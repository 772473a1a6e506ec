"""Diverse verifier tree search (DVTS): N / M independent subtrees, each a greedy search.

Reading implemented (search-and-learn, `sal/search/diverse_verifier_tree_search.py` and the
"Scaling test-time compute" blog post of Beeching et al. 2024): the budget N is split into
n_beams = N / M subtrees (M = `beam_expansion`); each subtree starts from the prompt, and at
every step expands its current node M ways, scores the candidates with the PRM and keeps only
its best one. Subtrees never compete: a subtree's width is never given to another.

Where this differs from search-and-learn, and why: search-and-learn stops a subtree as soon as
its best candidate ends (EOS) and returns that step's M candidates as the subtree's outputs,
finished or not; candidates that end while not being the best are dropped. Here the width
accounting is REBASE's and beam's, so that every method spends the same budget: a candidate
that finishes (answer, EOS, token limit) is a finished path and takes one unit of its subtree's
width M; the best *open* candidate (score descending, key ascending) gets the subtree's width
left as children. Each subtree therefore ends with exactly M finished paths and a problem with
exactly N (M being the last subtree's share when M does not divide N), unless the depth limit
closes the paths first.

Pure and stateless: subtree s is the set of nodes whose depth-1 ancestor has key in
[s·M, (s+1)·M) (the root's N children are the subtrees' first candidates, in sample order);
since a kept node gets exactly its subtree's width left, the width a subtree still has at a
depth is the number of its nodes there, so no state beyond the frontier is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_cli.domain import Expansion, LevelDecision, NodeSnapshot
from rebase_cli.search.frontier import (
    WidthStrategy,
    even_split,
    split_frontier,
    stopped_decision,
)


def subtree_of(node: NodeSnapshot, expansion: int) -> int:
    """The DVTS subtree of a node at depth >= 1: its depth-1 ancestor's key // M."""
    if node.lineage is None:
        raise ValueError(f"node {node.key} at depth {node.depth} has no lineage")
    return node.lineage // expansion


def subtree_sizes(width: int, expansion: int) -> list[int]:
    """The subtrees' widths: ceil(N / M) subtrees of M, the last one N mod M when M does not
    divide N."""
    return [min(expansion, width - start) for start in range(0, width, expansion)]


def allocate_dvts(
    nodes: Sequence[NodeSnapshot],
    *,
    width: int,
    expansion: int,
    max_path_tokens: int,
    depth: int,
) -> LevelDecision:
    """The DVTS decision for the frontier `nodes` at `depth` (see module docstring).

    `width` has the meaning of `allocate_rebase`'s. At depth 0 the root gets all of it (the
    subtrees' first M candidates each). Deeper, in every subtree the best open node gets as many
    children as the subtree has open nodes and its other open nodes get none; the counts sum to
    the width left. Kept nodes share weight uniformly. Raises ValueError on a frontier that is
    not a DVTS level (a subtree with more open nodes than the width left).
    """
    if expansion < 1:
        raise ValueError(f"DVTS expansion must be >= 1, got {expansion}")
    open_nodes, finished = split_frontier(nodes, max_path_tokens)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    if depth == 0:
        return even_split(open_nodes, remaining)
    best: dict[int, NodeSnapshot] = {}
    open_count: dict[int, int] = {}
    for node in open_nodes:  # best first, so the first node seen of a subtree is its best
        subtree = subtree_of(node, expansion)
        best.setdefault(subtree, node)
        open_count[subtree] = open_count.get(subtree, 0) + 1
    if sum(open_count.values()) != remaining:
        raise ValueError(
            f"not a DVTS level: {sum(open_count.values())} open nodes for a width of {remaining}"
        )
    kept = {node.key for node in best.values()}
    expansions = tuple(
        Expansion(
            key=node.key,
            weight=1.0 / len(kept) if node.key in kept else 0.0,
            children=open_count[subtree_of(node, expansion)] if node.key in kept else 0,
            subtree=subtree_of(node, expansion),
        )
        for node in open_nodes
    )
    return LevelDecision(expansions=expansions, remaining_width=remaining, stop=False)


class DvtsStrategy(WidthStrategy):
    """DVTS with N / M subtrees expanded M ways (M = `beam_expansion`)."""

    name = "dvts"

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:
        return allocate_dvts(
            frontier,
            width=width,
            expansion=self.params.beam_expansion,
            max_path_tokens=self.params.max_path_tokens,
            depth=depth,
        )
