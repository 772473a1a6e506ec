"""Reference solutions the simulated models know, built once at start-up.

Each problem of the loaded datasets becomes a `Reference`: its visible reference steps
(GSM8K: the solution's lines with the `<<...>>` calculator notes removed; MATH: its sentences),
which number in each step is the step's result (GSM8K's calculator notes say so; otherwise the
last number), a per-problem per-step error probability, and a small set of wrong answers.
Questions are indexed by their text for the policy (via the template) and by the first
characters of each line for the PRM, which sees the question inside an arbitrary prefix.
Questions the bank does not know get a generic reference built from their own numbers, so the
policy still writes well-formed steps for them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from rebase_cli.domain import Problem
from rebase_cli.sim.arith import NUMBER, parse_number

MAX_STEPS = 16  # longer MATH solutions are merged down to this many steps
_KEY_CHARS = 40  # length of the question prefix used as the PRM's lookup key
_SENTINEL = "\x00"
_CALC_NOTE = re.compile(r"<<([^<>]*)>>")
_BOXED = "\\boxed{"
_ASY = re.compile(r"\[asy\].*?\[/asy\]", re.S)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?]\$))\s+(?=[A-Z$(])")
_SPACES = re.compile(r"[ \t]+")
_WORD = re.compile(r"[^\W\d_]+")


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts that is the same in every process (unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def unit_interval(*parts: object) -> float:
    """A deterministic number in [0, 1) derived from the parts."""
    return stable_hash(*parts) / 2.0**64


CONNECTORS = ("so ", "then ", "next, ", "now ", "thus ", "hence ")  # lower case


def norm_body(body: str) -> str:
    """The comparison form of a step body: lower case, single spaces, no leading connectors
    (the policy varies its wording with them, and GSM8K lines often start with "So")."""
    text = " ".join(body.lower().split())
    stripped = True
    while stripped:
        stripped = False
        for connector in CONNECTORS:
            if text.startswith(connector):
                text, stripped = text[len(connector) :], True
    return text


def mask_numbers(text: str) -> str:
    """`text` with every number replaced by `#` (a wrong step differs only in a number)."""
    return NUMBER.sub("#", text)


@dataclass(frozen=True)
class RefStep:
    """One reference step. `target` is the (start, end) of the number a wrong version changes,
    None when the step has no number (such a step never goes wrong). `norm` and `masked` are
    its comparison forms (see norm_body, mask_numbers)."""

    body: str
    target: tuple[int, int] | None
    norm: str = ""
    masked: str = ""

    @classmethod
    def make(cls, body: str, target: tuple[int, int] | None) -> RefStep:
        norm = norm_body(body)
        return cls(body, target, norm, mask_numbers(norm))


@dataclass(frozen=True)
class Reference:
    """What the simulator believes is the right solution of one question."""

    question: str
    answer: str
    steps: tuple[RefStep, ...]
    wrong_answers: tuple[str, ...]
    difficulty: float  # in [0, 1): scales the global error rate for this problem
    known: bool = True


def clean_body(text: str, forbidden: Iterable[str]) -> str:
    """One step's visible text: boxes unwrapped, no forbidden (stop) strings, single spaces."""
    text = unbox(text)
    for stop in forbidden:
        if stop:
            text = text.replace(stop, " ")
    text = text.replace("\n", " ")
    return _SPACES.sub(" ", text).strip()


def unbox(text: str) -> str:
    """`... $\\boxed{\\frac{1}{2}}$` → `... $\\frac{1}{2}$` (braces matched)."""
    while (start := text.find(_BOXED)) >= 0:
        depth, end = 1, start + len(_BOXED)
        while end < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        inner = text[start + len(_BOXED) : end - 1] if depth == 0 else text[start + len(_BOXED) :]
        text = text[:start] + inner + text[end:]
    return text


def gsm8k_steps(solution: str, forbidden: Iterable[str]) -> list[RefStep]:
    """GSM8K lines; the number right after the last calculator note is the step's result."""
    steps = []
    for line in solution.splitlines():
        if not line.strip():
            continue
        # Mark where the last note's result starts with a sentinel that survives cleaning.
        notes = list(_CALC_NOTE.finditer(line))
        if notes:
            last = notes[-1]
            line = line[: last.start()] + _SENTINEL + line[last.end() :]
        body = clean_body(_CALC_NOTE.sub("", line), forbidden)
        near = body.find(_SENTINEL)
        body = body.replace(_SENTINEL, "")
        steps.append(RefStep.make(body, _target(body, near if near >= 0 else None)))
    return steps


def math_steps(solution: str, forbidden: Iterable[str]) -> list[RefStep]:
    """MATH solutions split into paragraphs and sentences, merged down to MAX_STEPS."""
    text = _ASY.sub(" ", solution)
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        pieces.extend(p for p in _SENTENCE_END.split(paragraph) if p.strip())
    bodies = [body for body in (clean_body(p, forbidden) for p in pieces) if body]
    while len(bodies) > MAX_STEPS:
        shortest = min(range(len(bodies) - 1), key=lambda i: len(bodies[i]) + len(bodies[i + 1]))
        bodies[shortest : shortest + 2] = [bodies[shortest] + " " + bodies[shortest + 1]]
    return [RefStep.make(body, _target(body, None)) for body in bodies]


def _target(body: str, near: int | None) -> tuple[int, int] | None:
    numbers = list(NUMBER.finditer(body))
    if not numbers:
        return None
    if near is not None:
        for match in numbers:
            if match.start() >= near:
                return match.span()
    return numbers[-1].span()


def generic_reference(question: str, forbidden: Iterable[str]) -> Reference:
    """Well-formed arithmetic steps for a question the bank does not know."""
    values = [parse_number(m.group()) for m in NUMBER.finditer(question)][:4]
    rng_pick = stable_hash("generic", question)
    if len(values) < 2:
        values = [Fraction(2 + rng_pick % 7), Fraction(3 + (rng_pick >> 8) % 11)]
    steps, total = [], values[0]
    for index, value in enumerate(values[1:]):
        op = "+-*"[(rng_pick >> (4 * index)) % 3]
        new = total + value if op == "+" else total - value if op == "-" else total * value
        expr = f"{format_number(total)} {op} {format_number(value)}"
        body = clean_body(f"We compute {expr} = {format_number(new)}.", forbidden)
        steps.append(RefStep.make(body, _target(body, None)))
        total = new
    answer = format_number(total)
    return Reference(
        question,
        answer,
        tuple(steps),
        wrong_answers(answer, question),
        unit_interval("difficulty", question),
        known=False,
    )


def format_number(value: Fraction, like: str = "") -> str:
    """A number written like `like`: same count of decimals (integers stay integers)."""
    decimals = len(like.partition(".")[2]) if "." in like else 0
    if decimals:
        return f"{float(value):.{decimals}f}"
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.2f}".rstrip("0").rstrip(".")


def perturb(written: str, choice: int) -> str:
    """A different number written like `written`, picked by `choice` (deterministic)."""
    value = parse_number(written)
    decimals = len(written.partition(".")[2])
    unit = Fraction(1, 10**decimals)
    magnitude = max(unit, abs(value))
    options = [
        value + unit,
        value - unit if value - unit >= 0 or value < 0 else value + 2 * unit,
        value * 2,
        value + max(unit, round(magnitude / 10, decimals)),
        value + 10 * unit,
        value - 2 * unit if value - 2 * unit >= 0 else value + 3 * unit,
    ]
    if value.denominator == 1 and value % 2 == 0 and value:
        options.append(value / 2)
    options = [o for o in options if o != value]
    return format_number(options[choice % len(options)], written)


def wrong_answers(answer: str, question: str) -> tuple[str, ...]:
    """Three distinct wrong answers derived from the reference, most popular first."""
    seed = stable_hash("wrong", question)
    candidates: list[str] = []
    numbers = list(NUMBER.finditer(answer))
    for attempt in range(24):
        if numbers:
            match = numbers[(seed >> attempt) % len(numbers)]
            new = perturb(match.group(), (seed >> (2 * attempt)) + attempt)
            candidate = answer[: match.start()] + new + answer[match.end() :]
        else:
            forms = (f"-{answer}", f"2{answer}", f"({answer})^2", f"{answer}+1", f"{answer}-1")
            candidate = forms[attempt % len(forms)]
        if candidate != answer and candidate not in candidates:
            candidates.append(candidate)
        if len(candidates) == 3:
            break
    return tuple(candidates)


def difficulty(problem: Problem) -> float:
    """In [0, 1): a hash of the question, pulled towards the MATH level when there is one."""
    base = unit_interval("difficulty", problem.question)
    if problem.level is not None:
        return 0.5 * base + 0.5 * (min(max(problem.level, 1), 5) - 1) / 5
    return base


def reference_for(problem: Problem, forbidden: tuple[str, ...]) -> Reference:
    """The reference of one dataset problem (GSM8K-style when its solution has calculator
    notes or its answer came from `####`, MATH-style sentences otherwise)."""
    solution = problem.solution or ""
    gsm8k_like = "<<" in solution or problem.source_id.startswith("gsm8k")
    steps = gsm8k_steps(solution, forbidden) if gsm8k_like else math_steps(solution, forbidden)
    if not steps:
        return generic_reference(problem.question, forbidden)
    return Reference(
        problem.question,
        problem.reference_answer,
        tuple(steps),
        wrong_answers(problem.reference_answer, problem.question),
        difficulty(problem),
    )


class Bank:
    """All references, found by exact question text or inside a longer text."""

    def __init__(self, problems: Iterable[Problem], forbidden: tuple[str, ...]) -> None:
        self.forbidden = forbidden
        self._by_question: dict[str, Reference] = {}
        self._by_key: dict[str, list[Reference]] = {}
        self._key_lengths: set[int] = set()
        for problem in problems:
            question = problem.question.strip()
            if question in self._by_question:
                continue  # duplicates across datasets: the first wins
            reference = reference_for(problem, forbidden)
            self._by_question[question] = reference
            key = question[:_KEY_CHARS]
            self._by_key.setdefault(key, []).append(reference)
            self._key_lengths.add(len(key))
        self._generic = lru_cache(maxsize=4096)(
            lambda question: generic_reference(question, self.forbidden)
        )

    def __len__(self) -> int:
        return len(self._by_question)

    def get(self, question: str) -> Reference | None:
        """The reference of exactly this question (surrounding whitespace ignored)."""
        return self._by_question.get(question.strip())

    def reference(self, question: str) -> Reference:
        """The known reference, or a generic one for an unknown question."""
        return self.get(question) or self._generic(question.strip())

    def find_in(self, text: str) -> tuple[Reference, int] | None:
        """A known question inside `text` and the index just after it. Candidates start at
        the beginning of the text or of a line (after stripping leading spaces); the last
        occurrence wins, because few-shot prompts put the real question last."""
        found: tuple[Reference, int] | None = None
        starts = [0, *(m.end() for m in re.finditer(r"\n|: ", text))]
        for start in starts:
            while start < len(text) and text[start] in " \t":
                start += 1
            for length in self._key_lengths:
                for reference in self._by_key.get(text[start : start + length], ()):
                    question = reference.question.strip()
                    if text.startswith(question, start):
                        end = start + len(question)
                        if found is None or end > found[1]:
                            found = (reference, end)
        return found
