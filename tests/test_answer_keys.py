"""The voting key of an answer (`answer_key`): answers vote together exactly when the grader's
own tests treat them alike, so a vote never splits what grading would call one answer."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.grading import answer_key, grade_many
from tests.test_grading_equivalence import GSM8K_PAIRS, MATH_PAIRS


@pytest.mark.parametrize(
    ("dataset", "first", "second"),
    [
        ("gsm8k", "18", " 18.0 "),
        ("gsm8k", "18 dollars", "\\$18.00"),
        ("gsm8k", "1,000", "1000"),
        ("gsm8k", "$1,000$", "\\boxed{1000}"),
        ("gsm8k", "-0.0", "0"),
        ("gsm8k", "−3", "-3"),
        ("math500", "0.5", "\\frac{1}{2}"),
        ("math500", "\\dfrac12", "1/2"),
        ("math500", "\\left( 1, 2 \\right)", "(1,2)"),
        ("math500", "5.", "5"),
        ("math500", "x + 1", "x+1"),
        ("my.jsonl", "18 apples", "18"),
    ],
)
def test_answers_the_grader_treats_alike_share_a_key(dataset, first, second) -> None:
    assert answer_key(first, dataset) == answer_key(second, dataset)


@pytest.mark.parametrize(
    ("dataset", "first", "second"),
    [
        ("gsm8k", "18", "19"),
        ("gsm8k", "18", "1 8"),
        ("math500", "x + 1", "x - 1"),
        ("math500", "\\frac{1}{2}", "\\frac{1}{3}"),
        ("math500", "(1,2)", "(2,1)"),
    ],
)
def test_different_answers_have_different_keys(dataset, first, second) -> None:
    assert answer_key(first, dataset) != answer_key(second, dataset)


def _same_key_pairs(pairs: list, dataset: str) -> list[tuple[str, str, str]]:
    """(answer, other answer with the same key, reference) over the hand-checked pairs."""
    answers = sorted({answer for answer, _, _ in pairs})
    references = sorted({reference for _, reference, _ in pairs})
    out = []
    for a, b in itertools.combinations(answers, 2):
        if answer_key(a, dataset) == answer_key(b, dataset):
            out.extend((a, b, reference) for reference in references)
    return out


@pytest.mark.parametrize(("dataset", "pairs"), [("gsm8k", GSM8K_PAIRS), ("math500", MATH_PAIRS)])
def test_answers_with_one_key_get_one_verdict_against_every_reference(dataset, pairs) -> None:
    """Over the hand-checked answers and references: two answers with the same key are graded
    the same against each reference (and such groups exist, so the test has cases)."""
    cases = _same_key_pairs(pairs, dataset)
    assert cases
    firsts = grade_many([(a, ref) for a, _, ref in cases], dataset)
    seconds = grade_many([(b, ref) for _, b, ref in cases], dataset)
    for (a, b, reference), one, other in zip(cases, firsts, seconds, strict=True):
        assert one.correct == other.correct, (a, b, reference)


NUMBERS = st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(value=NUMBERS, reference=NUMBERS)
def test_gsm8k_numbers_in_any_dress_share_a_key_and_a_verdict(value, reference) -> None:
    plain = format(value, "f")
    dressed = f"\\${value:,.2f} in total"
    assert answer_key(plain, "gsm8k") == answer_key(dressed, "gsm8k")
    verdicts = grade_many([(plain, str(reference)), (dressed, str(reference))], "gsm8k")
    assert verdicts[0].correct == verdicts[1].correct
