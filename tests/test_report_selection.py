"""The vectorised selection rules against a plain per-problem implementation of the documented
rules (which answers vote together is `answer_key`'s, tested in test_answer_keys.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.reports.aggregates import path_aggregates
from rebase_cli.reports.selection import AGGREGATES, RULES, AnswerTable, select


def _vote(answers: list, weight) -> bool:
    """Correctness of the group with the largest rounded total weight, ties to the group whose
    first answer comes first."""
    first: dict[int, int] = {}
    for i, (group, _, _) in enumerate(answers):
        first.setdefault(group, i)
    groups = sorted(first, key=first.get)
    totals = {g: round(sum(weight(a) for a in answers if a[0] == g), 12) for g in groups}
    best = max(totals.values())
    winner = next(g for g in groups if totals[g] == best)
    return answers[first[winner]][2]


def _reference(problems: list[list[tuple[int, dict[str, float], bool]]]) -> dict[str, list[bool]]:
    """The module docstring's rules, written the slow obvious way, per problem."""
    out: dict[str, list[bool]] = {rule: [] for rule in RULES}
    for answers in problems:
        if not answers:
            for rule in RULES:
                out[rule].append(False)
            continue
        out["majority"].append(_vote(answers, lambda a: 1.0))
        for agg in AGGREGATES:
            out[f"weighted_{agg}"].append(_vote(answers, lambda a, agg=agg: a[1][agg]))
            scores = [round(a[1][agg], 12) for a in answers]
            out[f"best_of_n_{agg}"].append(answers[scores.index(max(scores))][2])
        out["pass_at_n"].append(any(a[2] for a in answers))
    return out


_answer = st.tuples(
    st.integers(0, 3),
    st.fixed_dictionaries(
        {agg: st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) for agg in AGGREGATES}
    ),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_answer, max_size=6), min_size=1, max_size=6))
def test_vectorised_rules_equal_the_documented_rules(problems) -> None:
    # A group's answers share a verdict, as graded answers of one normalised string do.
    verdict_of = {}
    problems = [
        [(g, s, verdict_of.setdefault((p, g), c)) for g, s, c in answers]
        for p, answers in enumerate(problems)
    ]
    flat = [(p, a) for p, answers in enumerate(problems) for a in answers]
    table = AnswerTable(
        problem=np.array([p for p, _ in flat], dtype=np.int64),
        group=np.array([a[0] for _, a in flat], dtype=np.int64),
        correct=np.array([a[2] for _, a in flat], dtype=bool),
        scores={agg: np.array([a[1][agg] for _, a in flat], dtype=float) for agg in AGGREGATES},
    )
    got = select(table, len(problems))
    expected = _reference(problems)
    for rule in RULES:
        assert got[rule].tolist() == expected[rule], rule


def test_ties_go_to_the_first_answer_in_tie_order() -> None:
    ones = {agg: np.ones(4) for agg in AGGREGATES}
    table = AnswerTable(
        problem=np.zeros(4, dtype=np.int64),
        group=np.array([7, 3, 3, 7]),  # group codes say nothing about order
        correct=np.array([False, True, True, False]),
        scores=ones,
    )
    chosen = select(table, 1)
    # 2 votes each; group 7's first answer comes first → wrong.
    assert not chosen["majority"][0] and not chosen["weighted_prod"][0]
    assert not chosen["best_of_n_last"][0] and chosen["pass_at_n"][0]


def test_nan_scores_never_win() -> None:
    table = AnswerTable(
        problem=np.zeros(2, dtype=np.int64),
        group=np.array([0, 1]),
        correct=np.array([False, True]),
        scores={agg: np.array([np.nan, 0.1]) for agg in AGGREGATES},
    )
    chosen = select(table, 1)
    assert chosen["best_of_n_last"][0] and chosen["weighted_min"][0]


def test_problems_without_answers_are_wrong() -> None:
    table = AnswerTable(
        problem=np.array([1]),
        group=np.array([0]),
        correct=np.array([True]),
        scores={agg: np.array([0.5]) for agg in AGGREGATES},
    )
    chosen = select(table, 3)
    assert all(chosen[rule].tolist() == [False, True, False] for rule in RULES)


def test_path_aggregates_follow_parents_in_any_id_order() -> None:
    # ids deliberately not in depth order; root 50 → 10 (0.5) → 30 (0.2); root 50 → 20 (0.9)
    ids = np.array([30, 50, 20, 10])
    parents = np.array([10, -1, 50, 50])
    depths = np.array([2, 0, 1, 1])
    scores = np.array([0.2, 1.0, 0.9, 0.5])
    agg = path_aggregates(ids, parents, depths, scores)
    assert agg["last"].tolist() == [0.2, 1.0, 0.9, 0.5]
    assert agg["min"].tolist() == [0.2, 1.0, 0.9, 0.5]
    assert agg["prod"].tolist() == pytest.approx([0.1, 1.0, 0.9, 0.5])
    assert agg["mean"].tolist() == pytest.approx([0.35, 1.0, 0.9, 0.5])
