"""Accuracy of a run under every selection rule, at its budget and (for `sample` runs) at
every smaller power-of-two budget, plus breakdowns by MATH subject and level.

The denominator is the run's problems whose search finished (status `done`); failed and
unfinished problems are listed by the report instead of being counted as wrong, and a run with
any of them is labelled partial. A done problem without finished answers counts as wrong.

Subsampling (the paper's way of drawing a `sample` run's accuracy-vs-budget curve from one
run): for each of `draws` draws, the answers of every problem are shuffled with
`numpy.random.default_rng([seed, draw])` and the first k kept (nested: the budget-k subset is
contained in the budget-2k one); accuracy at k is the mean over draws. Kept answers stay in
generation order, so the tie rules of `selection` apply unchanged. A problem with fewer than k
answers keeps all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from rebase_cli.grading import answer_key
from rebase_cli.reports.loading import RunData
from rebase_cli.reports.selection import RULES, AnswerTable, select
from rebase_cli.reports.statistics import StatsOptions, bootstrap_intervals


def done_mask(data: RunData) -> np.ndarray:
    """Which problems (ProblemTable positions) count in the denominator."""
    return np.asarray([status == "done" for status in data.problems.status], dtype=bool)


def answer_table(
    data: RunData, verdicts: Mapping[tuple[str, str], bool], counted: np.ndarray
) -> AnswerTable:
    """The finished answers of the `counted` problems, renumbered 0..counted.sum()-1.

    Answers are grouped by the grader's `answer_key`; each answer's correctness is the verdict
    on its own (answer, reference) pair."""
    answers = data.answers
    renumber = np.cumsum(counted) - 1
    keep = counted[answers.problem] if len(answers) else np.zeros(0, dtype=bool)
    kept = np.flatnonzero(keep)
    references = data.problems.reference
    codes: dict[str, int] = {}
    normalised: dict[str, int] = {}
    group = np.empty(kept.shape[0], dtype=np.int64)
    correct = np.empty(kept.shape[0], dtype=bool)
    for out, i in enumerate(kept.tolist()):
        raw = answers.answer[i]
        code = normalised.get(raw)
        if code is None:
            code = codes.setdefault(answer_key(raw, data.run.dataset), len(codes))
            normalised[raw] = code
        group[out] = code
        correct[out] = verdicts[(raw, references[answers.problem[i]])]
    return AnswerTable(
        problem=renumber[answers.problem[kept]],
        group=group,
        correct=correct,
        scores={name: values[kept] for name, values in answers.scores.items()},
    )


def accuracy_row(
    correct: Mapping[str, np.ndarray],
    budget: int,
    problems: int,
    *,
    draws: int = 1,
    subsampled: bool = False,
    stats: StatsOptions = StatsOptions(),
) -> dict:
    """The report row for per-problem correctness arrays, summed over `draws` draws; `correct`
    is the mean number of problems right per draw (an integer when there is one draw), and
    `interval` the bootstrap interval of each accuracy (see `statistics`)."""
    row_correct = {rule: float(correct[rule].sum()) / draws for rule in RULES}
    per_problem = {rule: np.asarray(correct[rule], dtype=float) / draws for rule in RULES}
    return {
        "budget": budget,
        "subsampled": subsampled,
        "draws": draws,
        "problems": problems,
        "correct": {r: (int(v) if draws == 1 else v) for r, v in row_correct.items()},
        "accuracy": {r: (v / problems if problems else None) for r, v in row_correct.items()},
        "interval": bootstrap_intervals(per_problem, stats),
    }


def subsample_budgets(budget: int) -> list[int]:
    """Powers of two strictly below `budget`, ascending."""
    out, k = [], 1
    while k < budget:
        out.append(k)
        k *= 2
    return out


def subsampled_rows(
    table: AnswerTable,
    n_problems: int,
    budgets: Sequence[int],
    seed: int,
    draws: int,
    stats: StatsOptions = StatsOptions(),
) -> list[dict]:
    """One accuracy row per budget, each the mean over `draws` seeded draws (module docstring)."""
    sums = {k: {rule: np.zeros(n_problems) for rule in RULES} for k in budgets}
    rank = np.zeros(len(table), dtype=np.int64)
    if len(table):
        starts = np.searchsorted(table.problem, np.arange(n_problems))
    for draw in range(draws):
        if len(table):
            keys = np.random.default_rng([seed, draw]).random(len(table))
            order = np.lexsort((keys, table.problem))
            rank[order] = np.arange(len(table)) - starts[table.problem[order]]
        for k in budgets:
            chosen = select(table.take(rank < k), n_problems)
            for rule in RULES:
                sums[k][rule] += chosen[rule]
    return [
        accuracy_row(sums[k], k, n_problems, draws=draws, subsampled=True, stats=stats)
        for k in budgets
    ]


def breakdown(
    correct: Mapping[str, np.ndarray],
    keys: Sequence[object],
    sort_key: Callable[[object], object] = str,
) -> list[dict]:
    """Accuracy per distinct key (problems whose key is None are left out)."""
    groups: dict[object, list[int]] = {}
    for position, key in enumerate(keys):
        if key is not None:
            groups.setdefault(key, []).append(position)
    rows = []
    for key in sorted(groups, key=sort_key):
        members = np.asarray(groups[key], dtype=np.int64)
        rows.append(
            {
                "key": str(key),
                "problems": int(members.shape[0]),
                "accuracy": {rule: float(correct[rule][members].mean()) for rule in RULES},
            }
        )
    return rows
