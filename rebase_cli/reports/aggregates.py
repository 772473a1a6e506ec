"""Path scores: the step scores from depth 1 down to a node, aggregated (pure numpy).

For a node at depth d >= 1 with step scores s_1..s_d (the root's score is not a step and is
left out): last = s_d, min = min(s), prod = Π s, mean = Σ s / d. The root gets last = min =
prod = mean = 1.0 (it has no steps; it is never a finished answer, so this only matters as the
neutral start of the recursion). The same definitions as the reference code's agg_* functions,
computed for every node of a run in one pass per depth instead of one walk per answer.
"""

from __future__ import annotations

import numpy as np


def path_aggregates(
    ids: np.ndarray, parent_ids: np.ndarray, depths: np.ndarray, scores: np.ndarray
) -> dict[str, np.ndarray]:
    """last/min/prod/mean of every node's path, aligned with the input arrays.

    `parent_ids` of roots (depth 0) are ignored; every other node's parent must be among `ids`
    at depth - 1 (which the store guarantees: a level commits with its parents)."""
    n = ids.shape[0]
    scores = scores.astype(np.float64)
    minimum = np.ones(n)
    product = np.ones(n)
    total = np.zeros(n)
    if n == 0:
        return {"last": scores, "min": minimum, "prod": product, "mean": total}
    sorter = np.argsort(ids, kind="stable")
    by_depth = np.argsort(depths, kind="stable")
    bounds = np.searchsorted(depths[by_depth], np.arange(int(depths.max()) + 2))
    for depth in range(1, int(depths.max()) + 1):
        level = by_depth[bounds[depth] : bounds[depth + 1]]
        if level.shape[0] == 0:
            continue
        parents = sorter[np.searchsorted(ids, parent_ids[level], sorter=sorter)]
        step = scores[level]
        if depth == 1:
            minimum[level] = step
            product[level] = step
            total[level] = step
        else:
            minimum[level] = np.minimum(minimum[parents], step)
            product[level] = product[parents] * step
            total[level] = total[parents] + step
    last = np.where(depths > 0, scores, 1.0)
    mean = np.where(depths > 0, total / np.maximum(depths, 1), 1.0)
    return {"last": last, "min": minimum, "prod": product, "mean": mean}
