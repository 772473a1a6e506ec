"""Uncertainty of accuracies: bootstrap intervals over problems and paired comparisons.

With a few hundred problems an accuracy is uncertain by several points, so every accuracy the
report prints carries a 95% interval and two runs over the same problems are compared pairwise.

- Interval of one accuracy: the percentile bootstrap over problems. Each of `resamples`
  resamples draws the problems with replacement (`numpy.random.default_rng(seed)`, see
  `resample_weights`; the same draws for every rule and row, so their intervals are
  comparable); the interval is the (2.5%, 97.5%) percentiles of the resampled accuracies. A
  problem's value is its correctness (0 or 1), or for a subsampled row its mean over draws.
- Paired comparison of runs A and B over the problems both finished: per rule, the difference
  of accuracies B − A, its percentile-bootstrap interval over the same resampled problems, and
  the exact McNemar test: under "no difference" each discordant problem (right in one run only)
  is right in B with probability 1/2, so the two-sided p-value is
  min(1, 2 · P[Binomial(b + c, 1/2) ≤ min(b, c)]), with b, c the discordant counts. It needs
  no large-sample approximation, which matters at 50 problems.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from rebase_cli.reports.defaults import DEFAULT_RESAMPLES, DEFAULT_STATS_SEED

CONFIDENCE = 0.95
TEST_NAME = "exact McNemar (two-sided binomial test on discordant problems)"
INTERVAL_NAME = "percentile bootstrap over problems"


@dataclass(frozen=True)
class StatsOptions:
    """How intervals are drawn; stated in every report so a reader can reproduce them."""

    seed: int = DEFAULT_STATS_SEED
    resamples: int = DEFAULT_RESAMPLES
    confidence: float = CONFIDENCE

    def describe(self) -> dict:
        return {
            "interval": INTERVAL_NAME,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "paired_test": TEST_NAME,
        }


def resample_weights(n_problems: int, options: StatsOptions) -> np.ndarray:
    """(resamples × n_problems) counts: how often each problem is drawn in each resample.

    Resample r draws `n_problems` indexes uniformly with `default_rng(seed).integers`, row by
    row; the same (n, seed, resamples) always gives the same (read-only, cached) matrix, so
    every row and rule of a report is resampled alike."""
    return _weights(n_problems, options.seed, options.resamples)


@lru_cache(maxsize=8)
def _weights(n: int, seed: int, resamples: int) -> np.ndarray:
    if n == 0:
        return np.zeros((resamples, 0))
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    # One bincount over all rows at once: row r's draws are offset by r * n.
    offsets = np.arange(resamples, dtype=np.int64)[:, None] * n
    counts = np.bincount((draws + offsets).ravel(), minlength=resamples * n)
    weights = counts.reshape(resamples, n).astype(np.float64)
    weights.setflags(write=False)
    return weights


def bootstrap_intervals(
    values: Mapping[str, np.ndarray], options: StatsOptions
) -> dict[str, list[float] | None]:
    """For each key, the percentile-bootstrap interval of the mean of its per-problem values
    (all arrays have the same length; None when it is 0)."""
    lengths = {v.shape[0] for v in values.values()}
    n = lengths.pop() if lengths else 0
    if n == 0:
        return {key: None for key in values}
    weights = resample_weights(n, options)
    keys = list(values)
    # One matrix product for all keys: the resample matrix is read once, not once per key.
    means = weights @ np.column_stack([np.asarray(values[k], dtype=float) for k in keys]) / n
    return {key: _percentiles(means[:, i], options) for i, key in enumerate(keys)}


def _percentiles(samples: np.ndarray, options: StatsOptions) -> list[float]:
    tail = 100 * (1 - options.confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for discordant counts b and c (1.0 when both are 0)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_comparison(
    first: Mapping[str, np.ndarray],
    second: Mapping[str, np.ndarray],
    indexes: Sequence[int],
    rules: Sequence[str],
    options: StatsOptions,
) -> list[dict]:
    """One entry per rule comparing per-problem correctness `first` (run A) and `second`
    (run B), both aligned with the dataset `indexes` they share."""
    n = len(indexes)
    index_array = np.asarray(indexes, dtype=np.int64)
    diffs = np.zeros((n, len(rules)))
    for i, rule in enumerate(rules):
        diffs[:, i] = np.asarray(second[rule], dtype=float) - np.asarray(first[rule], dtype=float)
    resampled = resample_weights(n, options) @ diffs / n if n else None
    out = []
    for i, rule in enumerate(rules):
        a = np.asarray(first[rule], dtype=bool)
        b = np.asarray(second[rule], dtype=bool)
        gained = index_array[~a & b]
        lost = index_array[a & ~b]
        diff = diffs[:, i]
        out.append(
            {
                "rule": rule,
                "problems": n,
                "accuracy_a": float(a.mean()) if n else None,
                "accuracy_b": float(b.mean()) if n else None,
                "difference": float(diff.mean()) if n else None,
                "interval": None if resampled is None else _percentiles(resampled[:, i], options),
                "b_only": int(gained.shape[0]),
                "a_only": int(lost.shape[0]),
                "p_value": mcnemar_exact_p(int(gained.shape[0]), int(lost.shape[0])),
                "gained": [int(i) for i in gained],
                "lost": [int(i) for i in lost],
            }
        )
    return out
