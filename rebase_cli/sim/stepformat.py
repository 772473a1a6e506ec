"""How steps look under one prompt template, seen from the simulator's side.

The template writes steps (`format_step`, `format_answer`); this module reads them back:
strips the "Step k: " prefix, recognises an answer line and pulls out its answer, and compares
answers the way a lenient grader would. Both simulated models use one instance per server.
"""

from __future__ import annotations

import functools
import re
from fractions import Fraction

from rebase_cli.prompts import PromptTemplate
from rebase_cli.sim.bank import norm_body

NORM_MEMORY = 65_536  # step texts whose comparison form is remembered
_ANSWER_NOISE = re.compile(r"\\!|\\,|\\;|\$|\\text\{\s*\}|^\\boxed\{(.*)\}$")


class StepFormat:
    """Reader for the steps a `PromptTemplate` writes."""

    def __init__(self, template: PromptTemplate) -> None:
        self.template = template
        prefix = template.step_prefix.strip()
        self._prefix = (
            re.compile(r"\s*" + re.escape(prefix).replace(re.escape("{k}"), r"\d+") + r"\s*")
            if prefix
            else None
        )
        head, marker, tail = template.answer_format.partition("{answer}")
        head, tail = head.strip(), tail.strip()
        self._answer = (
            re.compile(re.escape(head) + r"\s*(.+?)\s*" + re.escape(tail) + r"\s*$", re.S)
            if marker
            else None
        )
        self._answer_head = head
        # Both models compare the same steps again and again (every prompt and every scored
        # path repeats its parent's steps): `norm` is pure, so its results are remembered.
        self.norm = functools.lru_cache(maxsize=NORM_MEMORY)(self._norm)  # type: ignore[method-assign]

    def strip_prefix(self, step: str) -> str:
        """The step without its "Step k: " prefix and surrounding whitespace."""
        step = step.strip()
        if self._prefix is not None:
            match = self._prefix.match(step)
            if match:
                return step[match.end() :]
        return step

    def _norm(self, step: str) -> str:
        """The comparison form of a step as written (prefix removed, see bank.norm_body)."""
        return norm_body(self.strip_prefix(step))

    def answer_of(self, step: str) -> str | None:
        """The answer if `step` is this template's answer line, else None."""
        if self._answer is None:
            return None
        text = self.strip_prefix(step)
        if self._answer_head and not text.startswith(self._answer_head):
            return None
        match = self._answer.match(text)
        return match.group(1) if match else None


def normalize_answer(answer: str) -> str:
    """A lenient canonical form: no spacing commands, no `$`, no outer box, no final dot,
    no thousands separators, numbers in lowest terms."""
    text = answer.strip().rstrip(".").strip()
    previous = None
    while previous != text:
        previous = text
        text = _ANSWER_NOISE.sub(lambda m: m.group(1) or "", text).strip()
    compact = text.replace(" ", "")
    try:
        value = Fraction(compact.replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return compact
    return str(value)


def same_answer(a: str, b: str) -> bool:
    """Whether two answers agree after `normalize_answer`."""
    return normalize_answer(a) == normalize_answer(b)
