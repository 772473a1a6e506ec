"""Final-answer extraction from generated text.

`extract_answer` looks for the answer in a fixed order and returns the first kind it finds:

1. the template's own regex (group 1), when one is given: it is the most specific signal;
2. the last `\\boxed{...}` / `\\fbox{...}` (braces matched, so nested groups survive);
3. the last "The answer is: X" / "The final answer is X" phrase, up to the end of its line;
4. the last GSM8K-style "#### N" line;
5. the last number in the text, only when `last_number_fallback` is set.

Invariant: the result is either None or a non-empty, stripped string with math delimiters
(`$...$`, `\\(...\\)`, `\\[...\\]`) and a sentence-ending period removed. Nothing here judges
correctness; see `rebase_cli.grading.equivalence`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from rebase_cli.grading.normalize import strip_delimiters

# `\boxedfoo` is not a box: the command name must end there.
_BOX_START = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])\s*")
# "The answer is: X", "the final answer is X", "Final Answer: The final answer is $X$. ..."
_ANSWER_PHRASE = re.compile(r"(?i)\b(?:final\s+)?answer\s+is\b\s*:?[ \t]*([^\n]*)")
_GSM8K_MARK = re.compile(r"(?m)^[ \t]*####[ \t]*(.+?)[ \t]*$")
# Signed integers or decimals, with optional thousands separators ("1,234.5", "-.5", "−3").
_NUMBER = re.compile(r"(?<![\w.])[-−]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?!\d)")


def extract_answer(
    text: str,
    *,
    answer_regex: str | None = None,
    last_number_fallback: bool = False,
) -> str | None:
    """The final answer stated in `text`, or None when it states none (see module docstring)."""
    if not text:
        return None
    if answer_regex:
        found = _last_regex_group(_compiled(answer_regex), text)
        if found is not None:
            return found
    for finder in (_last_boxed, _last_answer_phrase, _last_gsm8k_mark):
        found = finder(text)
        if found is not None:
            return found
    if last_number_fallback:
        numbers = _NUMBER.findall(text)
        return numbers[-1] if numbers else None
    return None


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` / `\\fbox{...}` in order of their start.

    Braces are matched (escaped `\\{`/`\\}` do not count), so `\\boxed{\\frac{1}{2}}` gives
    `\\frac{1}{2}`; a box whose braces never close is skipped. `\\boxed 5` (no braces) gives `5`.
    """
    contents = []
    for match in _BOX_START.finditer(text):
        start = match.end()
        if start < len(text) and text[start] == "{":
            inner = _balanced_group(text, start)
        else:
            bare = re.match(r"[^\s$]+", text[start:])
            inner = bare.group(0) if bare else None
        if inner is not None:
            contents.append(inner)
    return contents


def _balanced_group(text: str, open_at: int) -> str | None:
    """The text inside the brace group opening at `open_at`, or None if it never closes."""
    depth = 0
    index = open_at
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2  # an escaped character (\{, \}, \\) never opens or closes a group
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : index]
        index += 1
    return None


def _last_boxed(text: str) -> str | None:
    # Nested boxes are found too (the scan restarts right after each opening brace), so in
    # `\boxed{\boxed{5}}` the inner one, which starts last, wins.
    for inner in reversed(boxed_contents(text)):
        cleaned = clean_answer(inner)
        if cleaned is not None:
            return cleaned
    return None


def _last_answer_phrase(text: str) -> str | None:
    for match in reversed(list(_ANSWER_PHRASE.finditer(text))):
        rest = match.group(1).strip()
        if rest.startswith("$"):
            # Minerva style: "The final answer is $X$. I hope it is correct." keeps only X.
            delimited = re.match(r"\$\$(.+?)\$\$|\$(.+?)\$", rest)
            if delimited:
                rest = delimited.group(1) or delimited.group(2)
        cleaned = clean_answer(rest)
        if cleaned is not None:
            return cleaned
    return None


def _last_gsm8k_mark(text: str) -> str | None:
    return _last_regex_group(_GSM8K_MARK, text)


def _last_regex_group(pattern: re.Pattern[str], text: str) -> str | None:
    for match in reversed(list(pattern.finditer(text))):
        group = match.group(1) if pattern.groups else match.group(0)
        cleaned = clean_answer(group or "")
        if cleaned is not None:
            return cleaned
    return None


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def clean_answer(raw: str) -> str | None:
    """Strip whitespace, wrapping math delimiters and a trailing period; None when empty."""
    answer, previous = raw.strip(), None
    while answer and answer != previous:
        previous = answer
        if answer.endswith(".") and not answer.endswith("\\."):
            answer = answer[:-1].rstrip()
        answer = strip_delimiters(answer)
    return answer or None
