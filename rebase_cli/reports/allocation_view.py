"""Per-depth view of a run's search: what was generated at each depth and how the method
divided the width among the open nodes there (every method records its decisions: REBASE's
softmax shares, the nodes beam search and DVTS kept, particle filtering's resampled copies,
sampling's one child per open path).

For depth d, summed over the run's problems:
- `nodes`: nodes at depth d (depth 0 is the roots), `terminal`: those that end their path,
  `answers`: terminal ones with an extracted answer;
- `open`, `expanded`, `pruned`, `children`: from the allocation rows recorded at depth d (one
  per open node: `expanded` got children > 0, `pruned` got 0, `children` is the total given,
  which become the nodes of depth d + 1);
- `problems`: problems with at least one node at depth d.
Depths with no allocation rows (the last one) show zeros in the allocation columns.
"""

from __future__ import annotations

import numpy as np

from rebase_cli.reports.loading import RunData


def allocation_rows(data: RunData) -> list[dict]:
    """One row per depth from 0 to the deepest node or allocation (see module docstring)."""
    nodes = data.nodes
    decided = {row.depth: row for row in data.allocations}
    deepest_node = int(nodes.depth.max()) if nodes.depth.shape[0] else -1
    deepest = max([deepest_node, *decided.keys()], default=-1)
    if deepest < 0:
        return []
    size = deepest + 1
    per_depth = np.bincount(nodes.depth, minlength=size)
    terminal = np.bincount(nodes.depth, weights=nodes.terminal, minlength=size)
    answers = np.bincount(data.answers.depth, minlength=size)
    reached = _problems_per_depth(nodes.problem, nodes.depth, size)
    rows = []
    for depth in range(size):
        decision = decided.get(depth)
        rows.append(
            {
                "depth": depth,
                "problems": int(reached[depth]),
                "nodes": int(per_depth[depth]),
                "terminal": int(terminal[depth]),
                "answers": int(answers[depth]),
                "open": decision.open if decision else 0,
                "expanded": decision.expanded if decision else 0,
                "pruned": decision.pruned if decision else 0,
                "children": decision.children if decision else 0,
            }
        )
    return rows


def _problems_per_depth(problem: np.ndarray, depth: np.ndarray, size: int) -> np.ndarray:
    if problem.shape[0] == 0:
        return np.zeros(size, dtype=np.int64)
    pairs = np.unique(depth.astype(np.int64) * (int(problem.max()) + 1) + problem)
    return np.bincount(pairs // (int(problem.max()) + 1), minlength=size)
