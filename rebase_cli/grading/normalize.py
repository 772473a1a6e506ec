"""Light, presentational normalisation of answers and exact number parsing.

Everything here is cheap, pure string work that never changes what an answer means: it removes
typesetting (`\\dfrac`, `\\left`, `\\!`, degree marks, unit text, math delimiters) so that
answers written differently compare equal before sympy is ever needed. Numbers parse to
`Fraction`, so "0.5", ".50" and "\\frac12" are the same value exactly.
"""

from __future__ import annotations

import re
from fractions import Fraction

_TEXT_COMMANDS = r"(?:text|textbf|textit|textrm|textnormal|mbox|mathrm)"
_WHOLE_TEXT = re.compile(r"^\\" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}$")
# Unit text after a value ("5.4 \text{ cents}", "15\mbox{ cm}^2"): dropped with its exponent.
_UNIT_TEXT = re.compile(r"(?<=\S)\s*\\" + _TEXT_COMMANDS + r"\s*\{[^{}]*\}(?:\^\{?\d\}?)?")
_SPACING = re.compile(r"(?<!\\)\\[!,;:> ]|\\q?quad(?![A-Za-z])|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|°|\\degree(?![A-Za-z])")
_LEFT_RIGHT = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![A-Za-z])")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac(?![A-Za-z])")
_STYLE = re.compile(r"\\(?:displaystyle|textstyle)(?![A-Za-z])")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))

# A whole answer that is one number: "-1,234.50", ".5", "3", with an optional "\$" or "%".
_PLAIN_NUMBER = re.compile(r"^[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)$")
_FRAC_NUMBER = re.compile(r"^([-−]?)\\frac(?:\{([-−]?\d+)\}|(\d))(?:\{(\d+)\}|(\d))$")
_SLASH_NUMBER = re.compile(r"^([-−]?\d+)/(\d+)$")
# Numbers inside free text ("18 dollars", "$1,200.50 per week").
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.])[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?(?![\d])"
)


def normalize_latex(answer: str) -> str:
    """The answer without typesetting that carries no meaning; inner spaces kept (collapsed),
    since `\\cot x` is not `\\cotx`."""
    text = strip_delimiters(answer.strip())
    text = _STYLE.sub("", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    text = _LEFT_RIGHT.sub("", text)
    text = _SPACING.sub(" ", text)
    text = _DEGREES.sub("", text)
    text = text.replace("{,}", ",")  # "1{,}000" is a typeset thousands separator
    whole = _WHOLE_TEXT.match(text.strip())
    if whole:
        text = whole.group(1)
    else:
        text = _UNIT_TEXT.sub("", text)
    text = " ".join(text.split())
    while text.endswith(".") and not text.endswith("\\."):
        text = text[:-1].rstrip()
    return text


def comparison_key(normalized: str) -> str:
    """A key under which two normalised answers that differ only in spacing are equal."""
    return "".join(normalized.split())


def strip_delimiters(text: str) -> str:
    """`$x$`, `$$x$$`, `\\(x\\)`, `\\[x\\]` → `x` (repeatedly); an escaped closing
    delimiter (`$5\\$`) is text, not a delimiter."""
    changed = True
    while changed:
        changed = False
        for opening, closing in _DELIMITERS:
            if (
                len(text) >= len(opening) + len(closing)
                and text.startswith(opening)
                and text.endswith(closing)
                and not text.endswith("\\" + closing)
            ):
                text = text[len(opening) : len(text) - len(closing)].strip()
                changed = True
                break
    return text


def _minus(text: str) -> str:
    return text.replace("−", "-")


def parse_number(normalized: str) -> Fraction | None:
    """The exact value when the whole (normalised) answer is one number, else None.

    Accepts "1,234.5", ".5", "-3", "\\frac{3}{4}", "\\frac34", "3/4", a leading "\\$" or "$",
    a trailing "%" or "\\%" (the number itself is kept: "50%" is 50), and a leading
    one-letter assignment ("x = 5"). Anything else (radicals, π, text) is left to sympy.
    """
    text = comparison_key(normalized)
    assignment = re.match(r"^[A-Za-z]=(.+)$", text)
    if assignment:
        text = assignment.group(1)
    text = re.sub(r"^\\?\$", "", text)
    text = re.sub(r"\\?%$", "", text)
    if _PLAIN_NUMBER.match(text):
        return Fraction(_minus(text).replace(",", ""))
    frac = _FRAC_NUMBER.match(text)
    if frac:
        sign, num_braced, num_digit, den_braced, den_digit = frac.groups()
        denominator = int(den_braced or den_digit)
        if denominator == 0:
            return None
        value = Fraction(int(_minus(num_braced or num_digit)), denominator)
        return -value if sign else value
    slash = _SLASH_NUMBER.match(text)
    if slash and int(slash.group(2)) != 0:
        return Fraction(int(_minus(slash.group(1))), int(slash.group(2)))
    return None


def numbers_in_text(answer: str) -> list[Fraction]:
    """Every number written in a free-text answer ("$1,200.50 per week" → [1200.5]).

    Used for GSM8K-style answers, where units and words around the number are noise. Only the
    part after the last "=" counts, so "2 × 9 = 18" gives [18].
    """
    text = normalize_latex(answer)
    text = re.sub(r"\\frac\s*\{(\d+)\}\s*\{(\d+)\}", r"\1/\2", text)
    text = text.replace("\\$", " ").replace("$", " ").replace("\\%", " ").replace("%", " ")
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    values = []
    for token in _NUMBER_IN_TEXT.findall(text):
        token = _minus(token).replace(",", "").replace(" ", "")
        if "/" in token:
            numerator, denominator = token.split("/")
            if int(denominator) == 0:
                continue
            values.append(Fraction(int(numerator), int(denominator)))
        else:
            values.append(Fraction(token))
    return values


def numbers_equal(a: Fraction, b: Fraction) -> bool:
    """Exact equality, or equality after rounding both to 6 decimals (so 0.333333 is 1/3,
    but 0.33 is not)."""
    return a == b or round(a, 6) == round(b, 6)


def text_key(answer: str) -> str:
    """A case-folded key for word answers and multiple-choice letters: "\\text{(B)}" → "b"."""
    text = normalize_latex(answer)
    text = re.sub(r"\\" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}", r"\1", text)
    text = " ".join(text.split()).strip().lower()
    choice = re.match(r"^\(?([a-z])\)?$", text)
    return choice.group(1) if choice else text


def is_text_answer(reference: str) -> bool:
    """Whether a reference is words or a multiple-choice letter rather than mathematics.

    Such references are compared as text: sympy would read "Evelyn" as the product of six
    symbols and accept any anagram.
    """
    text = strip_delimiters(reference.strip())
    wrapped = re.match(r"^\\" + _TEXT_COMMANDS + r"\s*\{([^{}]*)\}$", text)
    if wrapped:
        inner = wrapped.group(1)
        return bool(re.search(r"[A-Za-z]", inner)) and not re.search(r"\d", inner)
    if re.match(r"^\([A-Za-z]\)$", text):
        return True
    return bool(re.match(r"^[A-Za-z][A-Za-z' -]*$", text)) and any(
        len(word) >= 3 for word in re.split(r"[ -]", text)
    )
