"""A deterministic stand-in tokenizer for token counts and `max_tokens` truncation.

One token is: a run of letters, a single digit (Llama-style tokenizers split numbers into
digits), or one other non-space character; leading whitespace sticks to the token after it.
Invariant: the tokens of a text concatenate back to the text, except trailing whitespace,
which counts as one more token.
"""

from __future__ import annotations

import re
import zlib

_TOKEN = re.compile(r"\s*(?:[^\W\d_]+|\d|[^\s])|\s+")


def count_tokens(text: str) -> int:
    """Number of tokens in `text` (0 for the empty string)."""
    return len(_TOKEN.findall(text))


VOCAB_SIZE = 32000
_RESERVED_IDS = 3  # 0-2: unk, bos, eos (Llama's layout)


def token_ids(text: str) -> tuple[int, ...]:
    """The token ids of `text`: one per token of `count_tokens`, a stable hash of its text
    (the same in every process), never one of the reserved special ids."""
    return tuple(
        _RESERVED_IDS + zlib.crc32(piece.encode()) % (VOCAB_SIZE - _RESERVED_IDS)
        for piece in _TOKEN.findall(text)
    )


def truncate_tokens(text: str, max_tokens: int) -> str:
    """The longest prefix of `text` made of at most `max_tokens` whole tokens."""
    if max_tokens <= 0:
        return ""
    end = 0
    for index, match in enumerate(_TOKEN.finditer(text)):
        if index == max_tokens:
            break
        end = match.end()
    return text[:end]
