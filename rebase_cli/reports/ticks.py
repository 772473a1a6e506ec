"""Readable tick positions and labels for a log-scale compute axis at any scale.

Matplotlib's default log axis labels minor ticks when the data span less than a decade, and
its `a×10^b` labels then run into each other (`3×10¹³4×10¹³`). Here the ticks are chosen from
1-2-5 steps per decade (or 1..9 when the span is a fraction of a decade, or powers of ten when it
is wide), at most `MAX_TICKS` of them, and labelled compactly (`20T`, `500k`, `0.5`).
"""

from __future__ import annotations

import math

MAX_TICKS = 7
_STEPS = ((1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10)), (1,))
# Below one decade, log-spaced 1..9 ticks crowd at the top (70, 80, 90): allow fewer of them.
_MAX_FINE_TICKS = 5
_PREFIXES = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def log_ticks(low: float, high: float) -> list[float]:
    """Tick positions inside [low, high] (both > 0), the first that fits of: 1-2-5 steps giving
    three to MAX_TICKS ticks; 1-2-3-5 or 1..9 steps giving two to _MAX_FINE_TICKS; 1-2-5 steps
    giving two; powers of ten (thinned to at most MAX_TICKS); the bounds themselves."""
    if low <= 0 or high <= 0:
        raise ValueError("log ticks need positive bounds")
    low, high = min(low, high), max(low, high)
    one_two_five, with_threes, all_steps, decades = (
        _candidates(low, high, steps) for steps in _STEPS
    )
    if 3 <= len(one_two_five) <= MAX_TICKS:
        return one_two_five
    for fine in (with_threes, all_steps):
        if 2 <= len(fine) <= _MAX_FINE_TICKS:
            return fine
    if 2 <= len(one_two_five) <= MAX_TICKS:
        return one_two_five
    if len(decades) >= 2:
        stride = math.ceil(len(decades) / MAX_TICKS)
        return decades[::stride]
    return [low, high]


def _candidates(low: float, high: float, steps: tuple[int, ...]) -> list[float]:
    first = math.floor(math.log10(low)) - 1
    last = math.ceil(math.log10(high)) + 1
    out = []
    for exponent in range(first, last + 1):
        for step in steps:
            value = step * 10.0**exponent
            if low * (1 - 1e-9) <= value <= high * (1 + 1e-9):
                out.append(value)
    return out


def compact(value: float) -> str:
    """20000000000000 → '20T', 500000 → '500k', 0.5 → '0.5', 12 → '12'."""
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"
