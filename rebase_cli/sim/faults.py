"""Seeded fault injection for the model routes.

Each model request draws one number from the server's fault RNG and meets at most one fault:
HTTP 500, HTTP 503, a hang (the answer comes only after `hang_seconds`, longer than any sane
client timeout), or a malformed body (status 200, truncated JSON). A fixed sequence of
requests meets the same faults on every run with the same seed. Health and stats routes never
fail, so a test can always ask the server how it is.
"""

from __future__ import annotations

import random
from enum import Enum

from rebase_cli.sim.config import FaultConfig


class Fault(str, Enum):
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HANG = "hang"
    MALFORMED = "malformed"


class FaultInjector:
    """Draws the fault (or None) of each model request and counts what it injected."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._rng = random.Random(seed)
        self._thresholds = self._cumulative(config)
        self.injected: dict[str, int] = {fault.value: 0 for fault in Fault}

    @staticmethod
    def _cumulative(config: FaultConfig) -> list[tuple[float, Fault]]:
        thresholds, total = [], 0.0
        for rate, fault in (
            (config.http_500, Fault.HTTP_500),
            (config.http_503, Fault.HTTP_503),
            (config.hang, Fault.HANG),
            (config.malformed, Fault.MALFORMED),
        ):
            if rate > 0:
                total += rate
                thresholds.append((total, fault))
        return thresholds

    @property
    def active(self) -> bool:
        return bool(self._thresholds)

    def draw(self) -> Fault | None:
        """The fault of the next model request, if any."""
        if not self._thresholds:
            return None
        u = self._rng.random()
        for threshold, fault in self._thresholds:
            if u < threshold:
                self.injected[fault.value] += 1
                return fault
        return None

    def reset(self) -> None:
        self._rng = random.Random(self.seed)
        self.injected = {fault.value: 0 for fault in Fault}
