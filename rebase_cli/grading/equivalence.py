"""Deciding whether an extracted answer equals the reference.

Cheapest test first, and sympy (through math-verify) only when nothing cheaper can decide:

- GSM8K: numbers only. Words, units, `$`, `%`, thousands separators and a trailing `.0` are
  noise; the answer must contain one number (or several equal ones) equal to the reference.
- MATH and any other dataset: equal after light normalisation → correct; word and
  multiple-choice references → compared as text; both sides plain numbers → compared exactly;
  otherwise math-verify decides, within a time bound (see `safe`).

Invariant: grading never raises for any answer string. A failure (unparseable, timed out,
library error) is an incorrect `Verdict` whose `reason` says why.
"""

from __future__ import annotations

import cmath
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

from rebase_cli.grading import normalize as norm
from rebase_cli.grading.safe import (
    DEFAULT_TIMEOUT_S,
    WORKERS,
    GradingTimeout,
    WorkerUnavailable,
    deadline,
    in_main_thread,
    run_in_worker,
)

# Bump whenever a verdict can change for the same (answer, reference, dataset): cached report
# figures are keyed on it.
GRADER_VERSION = "1"

# math-verify warns once that its own (signal) timeouts are off; ours replace them.
logging.getLogger("math_verify").setLevel(logging.ERROR)

GSM8K = "gsm8k"
MATH = "math"
GENERIC = "generic"

# How many sympy-bound pairs one worker task carries: large enough that IPC is negligible,
# small enough that the pool's workers share a batch evenly.
WORKER_CHUNK = 64
# sympy's parse time grows quadratically with length; real final answers are far shorter (the
# longest MATH500 reference has 53 characters), so a longer one is not compared
# symbolically.
MAX_SYMBOLIC_CHARS = 300


@dataclass(frozen=True)
class Verdict:
    """The grade of one answer.

    `correct` is the decision; `reason` says why an answer is not correct (None when it is).
    `answer` / `reference` are the normalised forms that were compared; `method` names the test
    that decided: "none" (no answer), "numeric", "exact", "text" or "math-verify".
    """

    correct: bool
    reason: str | None = None
    answer: str | None = None
    reference: str | None = None
    method: str = "none"


def grading_style(dataset: str) -> str:
    """ "gsm8k", "math" (math500, math) or "generic" (anything else) for a dataset name."""
    name = dataset.strip().lower()
    if name == GSM8K:
        return GSM8K
    if name in ("math500", "math"):
        return MATH
    return GENERIC


def answer_key(answer: str, dataset: str) -> str:
    """The key under which answers vote together in answer selection.

    It follows the grader's own cheap tests, so answers with the same key get the same verdict
    against any reference (word answers aside, which the grader compares with their inner
    spaces): for GSM8K (and prose answers elsewhere) the one number the
    answer states, for MATH the exact value of a plain number ("0.5", "\\frac12", "1/2" are
    one key), otherwise the normalised text without spaces. Keys of numbers start with "=".
    """
    style = grading_style(dataset)
    form = norm.normalize_latex(answer)
    prose = style == GENERIC and not re.search(r"[\\^{}_]", answer)
    if style == GSM8K or prose:
        numbers = set(norm.numbers_in_text(answer))
        if len(numbers) == 1:
            return f"={numbers.pop()}"
        if style == GSM8K:
            return norm.comparison_key(form)
    value = norm.parse_number(form)
    return f"={value}" if value is not None else norm.comparison_key(form)


def grade_answer(
    answer: str | None,
    reference: str,
    *,
    dataset: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Verdict:
    """Grade one extracted answer against its reference. Safe in any thread; never raises."""
    return grade_many([(answer, reference)], dataset, timeout_s=timeout_s)[0]


def grade_many(
    pairs: Iterable[tuple[str | None, str]],
    dataset: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[Verdict]:
    """Grade (answer, reference) pairs; the result is aligned with the input.

    Identical pairs are graded once. Pairs that need sympy are graded here when called from
    the main thread, else in worker processes. `on_progress(done, total)` counts distinct pairs.
    """
    style = grading_style(dataset)
    items = [(answer, str(reference)) for answer, reference in pairs]
    distinct = list(dict.fromkeys(items))
    verdicts: dict[tuple[str | None, str], Verdict] = {}
    needs_sympy = []
    for pair in distinct:
        quick = _grade_without_sympy(pair[0], pair[1], style)
        if quick is None:
            needs_sympy.append(pair)
        else:
            verdicts[pair] = quick
    _report(on_progress, len(verdicts), len(distinct))
    if in_main_thread():
        for pair in needs_sympy:
            verdicts[pair] = _grade_with_sympy(pair[0], pair[1], timeout_s)
            _report(on_progress, len(verdicts), len(distinct))
    elif needs_sympy:
        verdicts.update(zip(needs_sympy, _grade_in_workers(needs_sympy, timeout_s), strict=True))
        _report(on_progress, len(verdicts), len(distinct))
    return [verdicts[pair] for pair in items]


def _report(on_progress: Callable[[int, int], None] | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def _grade_without_sympy(answer: str | None, reference: str, style: str) -> Verdict | None:
    """A verdict from the cheap tests, or None when only sympy can decide."""
    ref_form = norm.normalize_latex(reference)
    if answer is None or not answer.strip():
        return Verdict(False, "no answer", None, ref_form, "none")
    ans_form = norm.normalize_latex(answer)
    if style == GSM8K:
        return _numeric_verdict(answer, reference, ans_form, ref_form)
    if ans_form and norm.comparison_key(ans_form) == norm.comparison_key(ref_form):
        return Verdict(True, None, ans_form, ref_form, "exact")
    if norm.is_text_answer(reference):
        same = norm.text_key(answer) == norm.text_key(reference)
        return Verdict(same, None if same else "not equal", ans_form, ref_form, "text")
    ref_value = norm.parse_number(ref_form)
    if ref_value is not None:
        ans_value = norm.parse_number(ans_form)
        if ans_value is not None:
            same = norm.numbers_equal(ans_value, ref_value)
            return Verdict(same, None if same else "not equal", ans_form, ref_form, "numeric")
        if style == GENERIC and not re.search(r"[\\^{}_]", answer):
            # Plain prose around a number ("18 dollars"): graded the GSM8K way.
            return _numeric_verdict(answer, reference, ans_form, ref_form)
    if len(ans_form) > MAX_SYMBOLIC_CHARS:
        return Verdict(False, "answer too long to compare", ans_form, ref_form, "none")
    return None


def _numeric_verdict(answer: str, reference: str, ans_form: str, ref_form: str) -> Verdict:
    ref_value = norm.parse_number(ref_form)
    if ref_value is None:
        ref_numbers = norm.numbers_in_text(reference)
        if len(set(ref_numbers)) != 1:
            return Verdict(False, "reference is not a number", ans_form, ref_form, "numeric")
        ref_value = ref_numbers[0]
    numbers = set(norm.numbers_in_text(answer))
    if not numbers:
        return Verdict(False, "answer is not a number", ans_form, ref_form, "numeric")
    if len(numbers) > 1:
        return Verdict(False, "answer has several numbers", ans_form, ref_form, "numeric")
    same = norm.numbers_equal(numbers.pop(), ref_value)
    return Verdict(same, None if same else "not equal", ans_form, ref_form, "numeric")


def _grade_with_sympy(answer: str, reference: str, timeout_s: float) -> Verdict:
    """math-verify's decision within `timeout_s`. Main thread only (uses SIGALRM)."""
    ans_form = norm.normalize_latex(answer)
    ref_form = norm.normalize_latex(reference)

    def verdict(correct: bool, reason: str | None) -> Verdict:
        return Verdict(correct, reason, ans_form, ref_form, "math-verify")

    # Imported here, not at module level, so that `rebase --help` does not pay for sympy; and
    # before the deadline, so that the first import never counts against an answer.
    import math_verify  # noqa: F401

    try:
        with deadline(timeout_s):
            gold = _parse(ref_form)
            if not gold:
                return verdict(False, "could not parse reference")
            target = _parse(ans_form)
            if not target:
                return verdict(False, "could not parse answer")
            # Two constants that are far apart need no symbolic proof (10-30x faster).
            if _clearly_different(_constant_value(ref_form), _constant_value(ans_form)):
                return verdict(False, "not equal")
            same = _verify(gold, target)
    except GradingTimeout:
        return verdict(False, f"timed out after {timeout_s:g}s")
    except Exception as exc:  # a library bug on odd input is a wrong answer, not a crash
        return verdict(False, f"grader error: {type(exc).__name__}")
    return verdict(same, None if same else "not equal")


@lru_cache(maxsize=8192)
def _parse(latex: str) -> tuple:
    """math-verify's parse of one answer (cached: references repeat across thousands of pairs).

    The answer goes in a `\\boxed{}` so that math-verify reads all of it; `$...$` is the
    fallback for text whose braces do not balance.
    """
    from math_verify import parse

    parsed = parse(f"\\boxed{{{latex}}}", parsing_timeout=None)
    if not parsed:
        parsed = parse(f"${latex}$", parsing_timeout=None)
    return tuple(parsed)


@lru_cache(maxsize=8192)
def _constant_value(latex: str) -> complex | None:
    """The numeric value of an answer that parses to a finite constant (a number, `2\\sqrt5`,
    `\\pi/6`), else None (symbols, sets, intervals, tuples, matrices, equations)."""
    from sympy import Expr

    parsed = _parse(latex)
    first = parsed[0] if parsed else None
    if not isinstance(first, Expr) or not first.is_number:
        return None
    try:
        value = complex(first.evalf(30))
    except (TypeError, ValueError, OverflowError):
        return None
    return value if cmath.isfinite(value) else None


def _clearly_different(a: complex | None, b: complex | None) -> bool:
    """True only when both are constants whose difference is far beyond any rounding that
    math-verify forgives (it compares at 6 decimals)."""
    if a is None or b is None:
        return False
    return abs(a - b) > 1e-5 * max(1.0, abs(a), abs(b))


def _verify(gold: Sequence, target: Sequence) -> bool:
    from math_verify import verify

    return bool(verify(list(gold), list(target), timeout_seconds=None))


def grade_chunk(pairs: list[tuple[str, str]], timeout_s: float) -> list[Verdict]:
    """Worker-process entry point: sympy-grade pairs in the worker's main thread."""
    return [_grade_with_sympy(answer, reference, timeout_s) for answer, reference in pairs]


def _grade_in_workers(pairs: list[tuple[str, str]], timeout_s: float) -> list[Verdict]:
    """Sympy-grade pairs in worker processes, their chunks in parallel."""
    chunks = [pairs[i : i + WORKER_CHUNK] for i in range(0, len(pairs), WORKER_CHUNK)]
    if len(chunks) == 1:
        return _grade_chunk_in_worker(chunks[0], timeout_s)
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="grading") as executor:
        graded = executor.map(lambda chunk: _grade_chunk_in_worker(chunk, timeout_s), chunks)
        return [verdict for chunk_verdicts in graded for verdict in chunk_verdicts]


def _grade_chunk_in_worker(pairs: list[tuple[str, str]], timeout_s: float) -> list[Verdict]:
    # The worker bounds each pair by its own deadline; this is the backstop for the chunk.
    backstop = (len(pairs) + 1) * timeout_s
    request = {"pairs": pairs, "timeout_s": timeout_s}
    try:
        replies = run_in_worker(request, timeout_s=backstop)
        return [Verdict(**reply) for reply in replies]
    except WorkerUnavailable as exc:
        return [
            Verdict(
                False, str(exc), norm.normalize_latex(a), norm.normalize_latex(r), "math-verify"
            )
            for a, r in pairs
        ]


def preload() -> None:
    """Import math-verify and sympy, and warm their caches, before the first answer."""
    _grade_with_sympy("x", "1", DEFAULT_TIMEOUT_S * 10)
