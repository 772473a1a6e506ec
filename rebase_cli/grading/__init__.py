"""Answer extraction and grading.

One path for every answer: `extract_answer` finds the final answer in generated text,
`answer_key` is the key answers vote under (the same tests the grader applies first), and
`grade_answer` / `grade_many` decide whether it equals the reference (numbers for GSM8K,
math-verify for MATH), safely from any thread and within a time bound. `GRADER_VERSION`
changes whenever a verdict could change.
"""

from rebase_cli.grading.equivalence import (
    GRADER_VERSION,
    Verdict,
    answer_key,
    grade_answer,
    grade_many,
    grading_style,
)
from rebase_cli.grading.extract import extract_answer
from rebase_cli.grading.safe import DEFAULT_TIMEOUT_S, shutdown_workers

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "GRADER_VERSION",
    "Verdict",
    "answer_key",
    "extract_answer",
    "grade_answer",
    "grade_many",
    "grading_style",
    "shutdown_workers",
]
