"""Lists of server URLs as users give them: comma-separated, repeated, or both."""

from __future__ import annotations

from collections.abc import Sequence


def split_urls(given: str | Sequence[str]) -> tuple[str, ...]:
    """The URLs of a `--reward`/`--policy`/`--worker-urls` value, in order, blanks dropped."""
    parts = [given] if isinstance(given, str) else list(given)
    return tuple(url.strip() for part in parts for url in part.split(",") if url.strip())
