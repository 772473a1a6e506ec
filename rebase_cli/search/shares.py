"""Turning softmax shares into whole child counts, and truncating the frontier first.

Two rounding rules exist for REBASE's allocation; both are exact (integer arithmetic on the
float64 weights, so no rounding noise can add or drop a child):

- `sequential_ceil` (the authors' code): walk the nodes best-first giving
  ceil(W_left * w_i / sum_{j>=i} w_j) to each; the counts always sum to W.
- `rounded_shares` (the paper's formula, Round(W * softmax_i)): each node independently gets
  its share rounded half up; the counts may sum to more or less than W.

`softmax_with_truncate` first keeps only the best ceil(n * truncate_ratio) open nodes
(`truncated_count`) and allocates among them; the others get no children.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def _scaled_integers(weights: Sequence[float]) -> list[int]:
    """The weights as integers of one common scale: every float is an integer multiple of a
    power of two, and the largest denominator is a multiple of every other one."""
    ratios = [w.as_integer_ratio() for w in weights]
    scale = max(den for _, den in ratios)
    return [num * (scale // den) for num, den in ratios]


def sequential_ceil(weights: Sequence[float], width: int) -> list[int]:
    """Walk `weights` in order giving ceil(W_left * w_i / sum_{j>=i} w_j) to each.

    Invariants: every count is >= 0; the counts sum to `width` whenever width > 0 and some
    weight is positive; the first positive weight gets >= 1.
    """
    if width <= 0 or not weights:
        return [0] * len(weights)
    scaled = _scaled_integers(weights)
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


def rounded_shares(weights: Sequence[float], width: int) -> list[int]:
    """The paper's Round(W * w_i / sum_j w_j) for each weight, rounded half up, exactly.

    Invariants: every count is >= 0 and differs from the exact share by at most 1/2; the sum
    is within n/2 of `width` (not necessarily equal to it: that is the paper's formula)."""
    if width <= 0 or not weights:
        return [0] * len(weights)
    scaled = _scaled_integers(weights)
    total = sum(scaled)
    if total <= 0:
        return [0] * len(weights)
    # floor(x + 1/2) with x = width * w / total, in integers: floor((2 width w + total) / 2 total)
    return [(2 * width * weight + total) // (2 * total) for weight in scaled]


def truncated_count(open_count: int, truncate_ratio: float) -> int:
    """How many of `open_count` best open nodes `softmax_with_truncate` keeps:
    ceil(open_count * truncate_ratio), with the ratio read as the decimal it was written as
    (0.3 is 3/10, so 10 nodes keep 3, where float arithmetic would give ceil(3.0000000000000004)
    = 4). Always >= 1 when `open_count` >= 1, never more than `open_count`."""
    if not 0 < truncate_ratio <= 1:
        raise ValueError(f"truncate_ratio must be in (0, 1], got {truncate_ratio!r}")
    if open_count <= 0:
        return 0
    exact = Fraction(repr(float(truncate_ratio)))
    return min(open_count, max(1, math.ceil(open_count * exact)))
