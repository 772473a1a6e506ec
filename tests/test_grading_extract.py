"""Final-answer extraction from generated text."""

from __future__ import annotations

import pytest

from rebase_cli.grading import extract_answer
from rebase_cli.grading.extract import boxed_contents


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the total is \\boxed{18}.", "18"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("$\\boxed{\\frac{\\sqrt{3}}{2}}$", "\\frac{\\sqrt{3}}{2}"),
        (
            "\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}",
            "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        ),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not close the box
        ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\fbox{42}", "42"),
        ("\\boxed 7", "7"),
        ("\\boxed{ $5$ }", "5"),
    ],
)
def test_boxed_answers_keep_nested_braces(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_the_last_box_wins() -> None:
    text = "First try \\boxed{3}. Wait, that is wrong: \\boxed{\\frac{7}{2}}"
    assert extract_answer(text) == "\\frac{7}{2}"


def test_an_unclosed_box_is_skipped() -> None:
    assert extract_answer("\\boxed{5} and then \\boxed{\\frac{1}{2}") == "5"
    assert extract_answer("\\boxed{\\frac{1}{2}") is None


def test_a_box_wins_over_an_answer_phrase() -> None:
    assert extract_answer("The answer is: \\boxed{12}") == "12"
    assert extract_answer("The answer is 5, i.e. \\boxed{5}") == "5"


def test_boxed_contents_lists_every_box_in_order() -> None:
    text = "\\boxed{a} \\fbox{b{c}} \\boxedfoo{no} \\boxed{d"
    assert boxed_contents(text) == ["a", "b{c}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 3: 9 * 2 = 18\nThe answer is: 18", "18"),
        ("The answer is 18.", "18"),
        ("The answer is: $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("the answer is: 3.5", "3.5"),
        (
            "Final Answer: The final answer is $\\dfrac{3}{4}$. I hope it is correct.",
            "\\dfrac{3}{4}",
        ),
        ("The answer is: 7\nnoise after it", "7"),
        ("The answer is: 4\nOn reflection, the answer is: 5", "5"),
        ("The answer is: \\$1,200", "\\$1,200"),
    ],
)
def test_answer_phrases(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("She pays 6 * 3 = <<6*3=18>>18 dollars.\n#### 18", "18"),
        ("#### 1,000\n", "1,000"),
        ("#### -3", "-3"),
        ("#### 2\nmore text\n#### 5", "5"),
    ],
)
def test_gsm8k_marks(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I am not sure how to solve this.",
        "There are 3 apples and 4 pears.",  # numbers, but no stated answer
        "The answer is:",
        "\\boxed{}",
        "#### ",
    ],
)
def test_no_stated_answer_gives_none(text: str) -> None:
    assert extract_answer(text) is None


def test_last_number_only_when_asked() -> None:
    text = "Half of 36 is 18, and 18 + 2 = 20 apples"
    assert extract_answer(text) is None
    assert extract_answer(text, last_number_fallback=True) == "20"
    assert extract_answer("It costs $1,234.50.", last_number_fallback=True) == "1,234.50"
    assert extract_answer("The change is -.5", last_number_fallback=True) == "-.5"
    assert extract_answer("no digits here", last_number_fallback=True) is None


def test_a_stated_answer_beats_the_last_number() -> None:
    assert extract_answer("The answer is: 18\nCheck: 3 + 4 = 7", last_number_fallback=True) == "18"


def test_a_custom_regex_is_tried_first() -> None:
    text = "Result => 42 (and \\boxed{7} in a scratch note)"
    assert extract_answer(text, answer_regex=r"Result => (\S+)") == "42"
    # No match: the built-in patterns still apply.
    assert extract_answer("\\boxed{7}", answer_regex=r"Result => (\S+)") == "7"
    # The last match wins, like everywhere else.
    assert extract_answer("A: 1\nA: 2", answer_regex=r"A: (\d+)") == "2"
