"""Answer equivalence on hand-checked pairs, and grading's safety guarantees.

Every pair below was checked by hand: `expected` is what a careful human grader decides.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.datasets import load_dataset
from rebase_cli.grading import (
    GRADER_VERSION,
    Verdict,
    extract_answer,
    grade_answer,
    grade_many,
    grading_style,
    safe,
)
from rebase_cli.grading.equivalence import _grade_without_sympy, grade_chunk
from rebase_cli.grading.safe import GradingTimeout, deadline, shutdown_workers

# (answer, reference, expected)
GSM8K_PAIRS = [
    ("18", "18", True),
    ("18.0", "18", True),
    ("18.00", "18", True),
    ("$18", "18", True),
    ("\\$18.00", "18", True),
    ("18 dollars", "18", True),
    ("1,000", "1000", True),
    ("1,234,567", "1234567", True),
    ("50%", "50", True),
    ("50\\%", "50", True),
    ("-3", "-3", True),
    ("2 \\times 9 = 18", "18", True),
    ("\\frac{36}{2}", "18", True),
    ("0.5", ".5", True),
    ("\\text{18 eggs}", "18", True),
    ("18 eggs and 18 more", "18", True),  # several numbers, all equal
    ("17", "18", False),
    ("180", "18", False),
    ("1.8", "18", False),
    ("-18", "18", False),
    ("0.5", "50", False),
    ("5 hours 30 minutes", "330", False),  # ambiguous: several different numbers
    ("eighteen", "18", False),  # words are not numbers
    ("12,34", "1234", False),  # not a thousands separator: two numbers
]

# (answer, reference, expected); references in the style of MATH500.
MATH_PAIRS = [
    # fractions
    ("\\frac{1}{2}", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", True),
    ("\\tfrac12", "\\frac{1}{2}", True),
    ("0.5", "\\frac12", True),
    ("\\frac12", "0.5", True),
    ("1/2", "\\frac{1}{2}", True),
    ("\\frac{2}{4}", "\\frac{1}{2}", True),
    ("\\dfrac{17}{50}", "0.34", True),
    ("-\\frac{3}{8}", "-\\frac{3}{8}", True),
    ("\\frac{-3}{8}", "-\\frac{3}{8}", True),
    ("\\frac{3}{8}", "-\\frac{3}{8}", False),
    ("0.33", "\\frac{1}{3}", False),
    ("\\frac{1}{3}", "\\frac{1}{2}", False),
    ("\\frac95", "1\\frac{4}{5}", True),  # mixed number
    ("137.5", "137 \\frac{1}{2}", True),
    # radicals
    ("2\\sqrt{5}", "2 \\sqrt{5}", True),
    ("\\sqrt{20}", "2\\sqrt{5}", True),
    ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}", True),
    ("11\\sqrt{2}", "11\\sqrt2", True),
    ("2\\sqrt{3}", "3\\sqrt{2}", False),
    ("\\sqrt{5}", "5", False),
    ("1+2\\sqrt{3}", "1+2\\sqrt{3}", True),
    ("2\\sqrt{3}+1", "1+2\\sqrt{3}", True),
    # intervals
    ("(-\\infty,0]", "(-\\infty, 0]", True),
    ("(-\\infty, 0)", "(-\\infty, 0]", False),
    ("[-2, 7]", "x \\in [-2,7]", True),
    ("(-\\infty,2)\\cup(3,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)", True),
    ("(3,4)", "(3,4]", False),
    ("\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", True),
    # tuples, points, sets
    ("(15, -29)", "(15,-29)", True),
    ("(-29, 15)", "(15,-29)", False),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
    ("7, 5, 3", "3, 5, 7", True),
    ("1-\\sqrt{19}, 1+\\sqrt{19}", "1 \\pm \\sqrt{19}", True),
    ("1+\\sqrt{19}", "1 \\pm \\sqrt{19}", False),
    # degrees and units
    ("30", "30^\\circ", True),
    ("30^{\\circ}", "30^\\circ", True),
    ("30°", "30^\\circ", True),
    ("60^\\circ", "30^\\circ", False),
    ("5.4", "5.4 \\text{ cents}", True),
    ("15", "15\\mbox{ cm}^2", True),
    ("18.90", "\\$18.90", True),
    ("10080", "10,\\!080", True),
    ("11111111100", "11,\\! 111,\\! 111,\\! 100", True),
    # text answers and multiple choice
    ("\\text{Evelyn}", "\\text{Evelyn}", True),
    ("Evelyn", "\\text{Evelyn}", True),
    ("\\text{Nyvele}", "\\text{Evelyn}", False),  # an anagram is not the same name
    ("(C)", "\\text{(C)}", True),
    ("C", "\\text{(C)}", True),
    ("\\textbf{(C)}", "\\text{(C)}", True),
    ("(B)", "\\text{(C)}", False),
    ("East", "\\text{east}", True),
    ("\\text{odd}", "\\text{even}", False),
    # expressions, equations, complex numbers, other forms
    ("\\pi", "\\pi", True),
    ("3.14", "\\pi", False),
    ("12\\pi", "12\\pi", True),
    ("ab+2a+5b+10", "(a+5)(b+2)", True),
    ("x^2+1", "(a+5)(b+2)", False),
    ("5", "x=5", True),
    ("y=2x+3", "y = 2x + 3", True),
    ("y=3x+2", "y = 2x + 3", False),
    ("-2+7i", "-2 + 7i", True),
    ("7i-2", "-2 + 7i", True),
    ("-2-7i", "-2 + 7i", False),
    ("\\frac{\\cos x}{\\sin x}", "\\cot x", True),
    ("1", "0", False),
    (
        "\\begin{pmatrix} -\\frac13 \\\\ \\frac23 \\\\ \\frac53 \\end{pmatrix}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        True,
    ),
    (
        "\\begin{pmatrix} 1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}",
        False,
    ),
]


@pytest.mark.parametrize(("answer", "reference", "expected"), GSM8K_PAIRS)
def test_gsm8k_pairs(answer: str, reference: str, expected: bool) -> None:
    verdict = grade_answer(answer, reference, dataset="gsm8k")
    assert verdict.correct is expected, verdict
    assert (verdict.reason is None) is expected


@pytest.mark.parametrize(("answer", "reference", "expected"), MATH_PAIRS)
def test_math_pairs(answer: str, reference: str, expected: bool) -> None:
    verdict = grade_answer(answer, reference, dataset="math500")
    assert verdict.correct is expected, verdict
    assert (verdict.reason is None) is expected


def test_the_suite_has_enough_hand_checked_pairs() -> None:
    pairs = GSM8K_PAIRS + MATH_PAIRS
    assert len(pairs) >= 60
    assert sum(not expected for *_, expected in pairs) >= 20  # known non-equivalent pairs


@pytest.mark.parametrize(
    ("answer", "reference", "expected"),
    [
        ("18 dollars", "18", True),  # prose around a number: numeric, like GSM8K
        ("\\frac{1}{2}", "0.5", True),  # LaTeX: math-verify
        ("2\\sqrt{5}", "\\sqrt{20}", True),
        ("19 dollars", "18", False),
    ],
)
def test_generic_datasets_try_numbers_then_mathematics(
    answer: str, reference: str, expected: bool
) -> None:
    assert grade_answer(answer, reference, dataset="my-set").correct is expected


def test_dataset_names_choose_the_grading_style() -> None:
    assert grading_style("gsm8k") == "gsm8k"
    assert grading_style("MATH500") == "math"
    assert grading_style("custom") == "generic"


@pytest.mark.parametrize("answer", [None, "", "   "])
def test_a_missing_answer_is_incorrect_with_a_reason(answer: str | None) -> None:
    verdict = grade_answer(answer, "18", dataset="gsm8k")
    assert verdict == Verdict(False, "no answer", None, "18", "none")


def test_cheap_cases_never_reach_sympy() -> None:
    # Identical, numeric and text answers are decided without math-verify: fast, thread-safe.
    assert _grade_without_sympy("\\dfrac{1}{2}", "0.5", "math").method == "numeric"
    assert _grade_without_sympy("\\left( 1, 2 \\right)", "(1,2)", "math").method == "exact"
    assert _grade_without_sympy("C", "\\text{(C)}", "math").method == "text"
    assert _grade_without_sympy("2\\sqrt5", "\\sqrt{20}", "math") is None


@pytest.mark.parametrize(
    "answer",
    [
        "\\frac{1}{",  # unbalanced braces
        "}{",
        "\\begin{pmatrix} 1 & 2",
        "\\sqrt[",
        "x" * 5000,
        "\\\\\\\\",
        "$$",
        "(((((((",
        "\\frac{1}{0}",
        "1/0",
        "\u2212",
    ],
)
def test_garbage_answers_are_incorrect_never_a_crash(answer: str) -> None:
    verdict = grade_answer(answer, "\\frac{1}{2}", dataset="math500")
    assert verdict.correct is False
    assert verdict.reason


# Strings built from the pieces answers are made of, including broken combinations.
LATEX_PIECES = [*"0123456789.,-+=/ $%()[]{}^_\\abxyz", "\\frac", "\\text{", "\\boxed{", "####"]
LATEXISH = st.lists(st.sampled_from(LATEX_PIECES), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(answer=st.one_of(st.none(), LATEXISH, st.text(max_size=40)), reference=LATEXISH)
def test_the_cheap_tests_never_raise(answer: str | None, reference: str) -> None:
    for style in ("gsm8k", "math", "generic"):
        verdict = _grade_without_sympy(answer, reference, style)
        assert verdict is None or (verdict.correct or verdict.reason)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(LATEXISH, st.text(max_size=80)))
def test_extraction_never_raises(text: str) -> None:
    for fallback in (False, True):
        answer = extract_answer(text, last_number_fallback=fallback)
        assert answer is None or (answer and answer == answer.strip())


def test_an_expensive_comparison_times_out_as_incorrect() -> None:
    verdict = grade_answer("9^{9^{9^{9}}}", "5", dataset="math500", timeout_s=0.5)
    assert verdict.correct is False
    assert verdict.reason == "timed out after 0.5s"


def test_the_deadline_gives_an_outer_timer_back_its_remaining_time() -> None:
    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        with pytest.raises(GradingTimeout), deadline(0.05):
            threading.Event().wait(5)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20.0 < left <= 30.0
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_grading_in_worker_threads_matches_the_main_thread() -> None:
    pairs = [(a, r) for a, r, _ in MATH_PAIRS[:20]] + [("9^{9^{9^{9}}}", "5")]
    in_main = grade_many(pairs, "math500", timeout_s=1.0)
    with ThreadPoolExecutor(max_workers=2) as executor:
        in_thread = executor.submit(grade_many, pairs, "math500", timeout_s=1.0).result()
        single = executor.submit(grade_answer, "2\\sqrt5", "\\sqrt{20}", dataset="math").result()
    assert in_thread == in_main
    assert in_thread[-1].reason == "timed out after 1s"
    assert single.correct is True


def test_grading_works_under_asyncio_to_thread() -> None:
    async def grade_concurrently() -> list[Verdict]:
        return await asyncio.gather(
            *(
                asyncio.to_thread(grade_answer, answer, "\\frac{\\sqrt{3}}{3}", dataset="math500")
                for answer in ("\\frac{1}{\\sqrt3}", "\\sqrt{3}", "\\frac{\\sqrt3}{3}")
            )
        )

    verdicts = asyncio.run(grade_concurrently())
    assert [v.correct for v in verdicts] == [True, False, True]


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        # A worker that dies at start-up.
        ("raise SystemExit(3)", "a grading worker exited"),
        # A worker that starts, then hangs where no signal can reach it: the backstop kills it.
        ("import time; print('\"ready\"', flush=True); time.sleep(60)", "no answer from a grading"),
    ],
)
def test_a_broken_worker_gives_incorrect_verdicts_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, command: str, reason: str
) -> None:
    shutdown_workers()  # start from fresh workers, which will run `command`
    monkeypatch.setattr(safe, "WORKER_COMMAND", (sys.executable, "-c", command))
    try:
        with ThreadPoolExecutor(max_workers=1) as executor:
            verdicts = executor.submit(
                grade_many, [("2\\sqrt5", "\\sqrt{20}")], "math", timeout_s=0.2
            ).result()
    finally:
        shutdown_workers()
    assert verdicts[0].correct is False
    assert verdicts[0].reason.startswith(reason)


def test_worker_verdicts_travel_as_json() -> None:
    # What the worker process sends back must rebuild the same Verdict.
    verdicts = grade_chunk([("2\\sqrt5", "\\sqrt{20}"), ("}{", "1")], 5.0)
    rebuilt = [Verdict(**json.loads(json.dumps(v.__dict__))) for v in verdicts]
    assert rebuilt == verdicts
    assert verdicts[0].correct and not verdicts[1].correct


def test_grade_many_dedupes_and_keeps_order() -> None:
    pairs = [("18", "18"), ("17", "18"), ("18", "18"), (None, "18")] * 250
    seen = []
    verdicts = grade_many(pairs, "gsm8k", on_progress=lambda done, total: seen.append(total))
    assert [v.correct for v in verdicts[:4]] == [True, False, True, False]
    assert len(verdicts) == 1000
    assert set(seen) == {3}  # three distinct pairs


def test_math500_solutions_grade_correct_against_their_answers() -> None:
    # The final box of each reference solution must equal the dataset's answer; the answer of
    # another problem must not.
    problems = load_dataset("math500").problems[::5]
    own = grade_many(
        [(extract_answer(p.solution), p.reference_answer) for p in problems], "math500"
    )
    assert [p.source_id for p, v in zip(problems, own, strict=True) if not v.correct] == []
    shifted = problems[1:] + problems[:1]
    cross = grade_many(
        [
            (other.reference_answer, p.reference_answer)
            for p, other in zip(problems, shifted, strict=True)
            if other.reference_answer != p.reference_answer
        ],
        "math500",
    )
    assert sum(v.correct for v in cross) == 0


def test_grader_version_is_a_string() -> None:
    assert isinstance(GRADER_VERSION, str) and GRADER_VERSION
