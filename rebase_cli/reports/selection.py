"""Answer-selection rules over the finished answers of many problems at once (pure numpy).

Rules (`RULES`, in report order):

- `majority`: the answer group with the most finished answers.
- `weighted_<agg>`: the group with the largest sum of path scores, the score of a path being
  its step scores aggregated by `agg` (last, min, prod or mean; see `aggregates.py`).
- `best_of_n_<agg>`: the single answer with the largest aggregated path score.
- `pass_at_n`: whether any finished answer is correct (an upper bound, not a selection).

Answer groups: answers vote together when the grader's `answer_key` gives them one key (the
number an answer states, or its normalised text), so "18 dollars" and "18.0", or "0.5" and
"\\frac12", are one group, and the answers of a group share a verdict. Answers only sympy can
equate ("x+1" and "1+x") still vote apart, which matters only when it changes the winner.

Ties, deterministic: answers are given in tie order, which the report makes (depth, ordinal) of
the answer's node, i.e. generation order. Among tied groups the winner is the group whose first
answer comes first; among tied answers (best-of-N) the first answer wins. Scores and vote sums are
compared after rounding to 12 decimal places, so sums that differ only by floating-point error
tie. A chosen group is correct when its first answer is (all answers of a group normally get the
same verdict). A NaN score counts as -inf. A problem without finished answers is wrong under
every rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from rebase_cli.errors import UsageError

AGGREGATES = ("last", "min", "prod", "mean")
RULES = (
    "majority",
    *(f"weighted_{agg}" for agg in AGGREGATES),
    *(f"best_of_n_{agg}" for agg in AGGREGATES),
    "pass_at_n",
)
RULE_LABELS = {
    "majority": "majority vote",
    **{f"weighted_{a}": f"weighted vote ({a})" for a in AGGREGATES},
    **{f"best_of_n_{a}": f"best-of-N ({a})" for a in AGGREGATES},
    "pass_at_n": "pass@N (any correct)",
}
SHORT_LABELS = {
    "majority": "maj",
    **{f"weighted_{a}": f"w-{a}" for a in AGGREGATES},
    **{f"best_of_n_{a}": f"bo-{a}" for a in AGGREGATES},
    "pass_at_n": "pass@N",
}
ORACLE_RULE = "pass_at_n"
_DECIMALS = 12


def parse_rules(text: str) -> tuple[str, ...]:
    """'weighted_last,majority' → ('weighted_last', 'majority'); unknown names are refused."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in RULES]
    if unknown or not names:
        raise UsageError(
            f"unknown selection rule {', '.join(unknown) or repr(text)}",
            f"--rules takes a comma-separated list of: {', '.join(RULES)}",
        )
    return names


@dataclass(frozen=True)
class AnswerTable:
    """Finished answers of many problems, flat.

    Invariants: `problem` is non-decreasing (answers of a problem are contiguous) and, within a
    problem, answers are in tie order; all arrays have the same length. `group` holds any integer
    coding of the normalised answers that is consistent across the table; `scores` maps each
    aggregate name to the aggregated path score of each answer."""

    problem: np.ndarray  # int64
    group: np.ndarray  # int64
    correct: np.ndarray  # bool
    scores: Mapping[str, np.ndarray]  # float64 each

    def __len__(self) -> int:
        return int(self.problem.shape[0])

    def take(self, mask: np.ndarray) -> AnswerTable:
        """The answers where `mask` holds, order kept (so the invariants still hold)."""
        return AnswerTable(
            self.problem[mask],
            self.group[mask],
            self.correct[mask],
            {name: values[mask] for name, values in self.scores.items()},
        )


def select(table: AnswerTable, n_problems: int) -> dict[str, np.ndarray]:
    """For every rule, a bool array over problems 0..n_problems-1: is the chosen answer correct."""
    out = {rule: np.zeros(n_problems, dtype=bool) for rule in RULES}
    if len(table) == 0:
        return out
    codes, representative, group_problem = _groups_by_first_occurrence(table)
    correct = table.correct

    votes = np.bincount(codes, minlength=representative.shape[0]).astype(np.float64)
    winners = _segment_argmax(votes, group_problem, n_problems)
    out["majority"] = _pick(correct, representative, winners)
    for agg in AGGREGATES:
        scores = _clean(table.scores[agg])
        sums = np.bincount(codes, weights=scores, minlength=representative.shape[0])
        winners = _segment_argmax(sums, group_problem, n_problems)
        out[f"weighted_{agg}"] = _pick(correct, representative, winners)
        best = _segment_argmax(scores, table.problem, n_problems)
        out[f"best_of_n_{agg}"] = _pick(correct, np.arange(len(table)), best)
    out["pass_at_n"] = np.bincount(table.problem, weights=correct, minlength=n_problems) > 0
    return out


def _groups_by_first_occurrence(table: AnswerTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-answer group codes numbered in order of each group's first answer, the index of
    each group's first answer, and each group's problem.

    Because answers are sorted by problem, numbering groups by first answer keeps the groups of
    a problem contiguous and in tie order, which `_segment_argmax` relies on."""
    span = int(table.group.max()) + 1
    keys = table.problem.astype(np.int64) * span + table.group.astype(np.int64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    representative = first[order]
    return rank[inverse.reshape(-1)], representative, table.problem[representative]


def _segment_argmax(values: np.ndarray, segment: np.ndarray, n_segments: int) -> np.ndarray:
    """For each segment id 0..n_segments-1, the index of its first maximal value (-1 if empty).

    `segment` must be non-decreasing. Values are rounded to `_DECIMALS` places first."""
    winners = np.full(n_segments, -1, dtype=np.int64)
    if values.shape[0] == 0:
        return winners
    rounded = np.round(values, _DECIMALS)
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    maxima = np.maximum.reduceat(rounded, starts)
    lengths = np.diff(np.r_[starts, values.shape[0]])
    is_max = rounded == np.repeat(maxima, lengths)
    positions = np.where(is_max, np.arange(values.shape[0]), values.shape[0])
    winners[segment[starts]] = np.minimum.reduceat(positions, starts)
    return winners


def _pick(correct: np.ndarray, representative: np.ndarray, winners: np.ndarray) -> np.ndarray:
    """Correctness of each problem's winner (False where there is none)."""
    chosen = np.zeros(winners.shape[0], dtype=bool)
    has = winners >= 0
    chosen[has] = correct[representative[winners[has]]]
    return chosen


def _clean(scores: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(scores), -np.inf, scores.astype(np.float64))
