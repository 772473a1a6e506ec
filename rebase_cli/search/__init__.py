"""Search strategies: pure functions from a depth's node snapshots to an allocation.

Nothing here does I/O or imports the store, the clients or the CLI (DESIGN §2). The runner
asks `get_strategy(name, params).decide(frontier, finished_so_far, depth)` at every depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from rebase_cli.errors import ConfigError
from rebase_cli.params import Method
from rebase_cli.search.base import Strategy, StrategyParams
from rebase_cli.search.beam import BeamStrategy, allocate_beam
from rebase_cli.search.dvts import DvtsStrategy, allocate_dvts
from rebase_cli.search.frontier import count_finished, is_finished
from rebase_cli.search.particle import ParticleStrategy, allocate_particles
from rebase_cli.search.rebase import RebaseStrategy, allocate_rebase
from rebase_cli.search.sample import SampleStrategy, allocate_sample

# One strategy per Method (tests/test_strategies.py checks that none is missing).
STRATEGIES: dict[str, Callable[[StrategyParams], Strategy]] = {
    Method.rebase: RebaseStrategy,
    Method.sample: SampleStrategy,
    Method.beam: BeamStrategy,
    Method.dvts: DvtsStrategy,
    Method.particle: ParticleStrategy,
}

__all__ = [
    "STRATEGIES",
    "Strategy",
    "StrategyParams",
    "allocate_beam",
    "allocate_dvts",
    "allocate_particles",
    "allocate_rebase",
    "allocate_sample",
    "count_finished",
    "get_strategy",
    "is_finished",
]


def get_strategy(name: str, params: StrategyParams | Mapping[str, Any]) -> Strategy:
    """The strategy called `name` (a key of STRATEGIES) with `params`.

    The values are not checked here: `SearchConfig` validates them, once, and builds the
    params (`SearchConfig.strategy_params`). A mapping (for tests and experiments) is taken
    as StrategyParams' own field names; an unknown name is refused."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown search method {name!r}", f"use one of {', '.join(sorted(STRATEGIES))}"
        )
    if not isinstance(params, StrategyParams):
        known = {f.name for f in fields(StrategyParams)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"unknown search parameter(s): {', '.join(unknown)}",
                f"allowed: {', '.join(sorted(known))}",
            )
        params = StrategyParams(**params)
    return factory(params)
