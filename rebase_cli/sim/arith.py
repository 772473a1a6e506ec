"""Arithmetic claims in free text (`48 / 2 = 24`, `80,000*1.5=$120,000`), checked exactly.

This is how the simulated PRM judges steps it did not write: every `expression = number` with
at least one operator is evaluated with `fractions.Fraction`; a result written with d decimals
counts as right when it equals the exact value rounded to d places. Anything that does not
parse as plain arithmetic (algebra, LaTeX fractions, prose) is not a claim and is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
_RHS = re.compile(r"\s*\$?\s*(-?\d+(?:,\d{3})*(?:\.\d+)?)")
_RHS_CONTINUES = re.compile(r"\s*[-+*/×÷^]\s*\(?\s*\d")
_LHS_CHARS = frozenset("0123456789.,+-*/x×÷^()$% ")
_LATEX_OPS = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("−", "-"), ("·", "*"))
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_TOKENS = re.compile(r"\d+(?:\.\d+)?%?|[-+*/x×÷^()]")


@dataclass(frozen=True)
class ClaimCount:
    """How many arithmetic claims in a text hold and how many do not."""

    right: int = 0
    wrong: int = 0

    @property
    def label(self) -> int:
        """+1 when some claims hold and none fails, -1 when any fails, 0 when there are none."""
        if self.wrong:
            return -1
        return 1 if self.right else 0


def parse_number(text: str) -> Fraction:
    """`"130,000"` → 130000, `"0.25"` → 1/4 (exact)."""
    return Fraction(text.replace(",", ""))


def check_claims(text: str) -> ClaimCount:
    """Count the right and wrong `expression = number` claims in `text`."""
    if "=" not in text:
        return ClaimCount()
    for latex, plain in _LATEX_OPS:
        text = text.replace(latex, plain)
    right = wrong = 0
    for position, char in enumerate(text):
        if char != "=" or _is_comparison(text, position):
            continue
        lhs = _left_operand(text, position)
        rhs_match = _RHS.match(text, position + 1)
        if lhs is None or rhs_match is None or _RHS_CONTINUES.match(text, rhs_match.end()):
            continue
        value = evaluate(lhs)
        if value is None:
            continue
        if _matches(value, rhs_match.group(1)):
            right += 1
        else:
            wrong += 1
    return ClaimCount(right, wrong)


def _is_comparison(text: str, position: int) -> bool:
    before = text[position - 1] if position else ""
    after = text[position + 1] if position + 1 < len(text) else ""
    return before in "<>=!" or after == "="


def _left_operand(text: str, position: int) -> str | None:
    start = position
    while start > 0 and text[start - 1] in _LHS_CHARS:
        start -= 1
    lhs = text[start:position].replace("$", "").strip()
    # A letter right before the scanned run (as in "2x + 3") means algebra, not arithmetic.
    if start > 0 and text[start - 1].isalpha() and lhs and not text[start].isspace():
        return None
    return lhs or None


def evaluate(expression: str) -> Fraction | None:
    """The exact value of `expression` (+ - * / ^ ( ) x × ÷ %), or None if it is not plain
    arithmetic with at least one binary operator."""
    expression = _THOUSANDS.sub("", expression).replace(" ", "")
    tokens = _TOKENS.findall(expression)
    if "".join(tokens) != expression:
        return None  # something we do not understand is in there
    parser = _Parser(tokens)
    try:
        value = parser.expression()
    except (ArithmeticError, IndexError, ValueError):
        return None
    if parser.position != len(tokens) or not parser.binary_ops:
        return None
    return value


def _matches(value: Fraction, written: str) -> bool:
    claimed = parse_number(written)
    if claimed == value:
        return True
    decimals = len(written.partition(".")[2])
    return abs(value - claimed) <= Fraction(1, 2 * 10**decimals) if decimals else False


class _Parser:
    """Recursive descent over the tokens: expression := term (('+'|'-') term)*, etc."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0
        self.binary_ops = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def expression(self) -> Fraction:
        value = self.term()
        while self._peek() in ("+", "-"):
            op = self._take()
            self.binary_ops += 1
            rhs = self.term()
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.power()
        while self._peek() in ("*", "/", "x", "×", "÷"):
            op = self._take()
            self.binary_ops += 1
            rhs = self.power()
            value = value / rhs if op in ("/", "÷") else value * rhs
        return value

    def power(self) -> Fraction:
        value = self.unary()
        if self._peek() == "^":
            self._take()
            self.binary_ops += 1
            exponent = self.unary()
            if exponent.denominator != 1 or abs(exponent) > 64:
                raise ValueError("unsupported exponent")
            value = value ** int(exponent)
        return value

    def unary(self) -> Fraction:
        if self._peek() == "-":
            self._take()
            return -self.unary()
        return self.atom()

    def atom(self) -> Fraction:
        token = self._take()
        if token == "(":
            value = self.expression()
            if self._take() != ")":
                raise ValueError("unbalanced parenthesis")
            return value
        if token[0].isdigit():
            if token.endswith("%"):
                return Fraction(token[:-1]) / 100
            return Fraction(token)
        raise ValueError(f"unexpected token {token!r}")
