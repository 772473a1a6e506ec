"""Search strategies: pure functions from a depth's node snapshots to an allocation.

Nothing here does I/O or imports the store, the clients or the CLI (DESIGN §2). The runner
asks `get_strategy(name, params).decide(frontier, finished_so_far, depth)` at every depth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from rebase_cli.errors import ConfigError
from rebase_cli.search.base import SHARE_ROUNDINGS, TIE_ORDERS, Strategy, StrategyParams
from rebase_cli.search.beam import BeamStrategy, allocate_beam
from rebase_cli.search.dvts import DvtsStrategy, allocate_dvts
from rebase_cli.search.frontier import count_finished, is_finished
from rebase_cli.search.particle import ParticleStrategy, allocate_particles
from rebase_cli.search.rebase import RebaseStrategy, allocate_rebase
from rebase_cli.search.sample import SampleStrategy, allocate_sample

STRATEGIES: dict[str, Callable[[StrategyParams], Strategy]] = {
    "rebase": RebaseStrategy,
    "sample": SampleStrategy,
    "beam": BeamStrategy,
    "dvts": DvtsStrategy,
    "particle": ParticleStrategy,
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
    "make_params",
]


def make_params(values: Mapping[str, Any]) -> StrategyParams:
    """StrategyParams from a mapping, rejecting unknown keys and impossible values."""
    known = {f.name for f in fields(StrategyParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown search parameter(s): {', '.join(unknown)}",
            f"allowed: {', '.join(sorted(known))}",
        )
    try:
        params = StrategyParams(**values)
    except TypeError as exc:
        raise ConfigError(f"bad search parameters: {exc}", "`width` is required") from None
    _validate(params)
    return params


def _validate(params: StrategyParams) -> None:
    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def positive_number(name: str, value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{name} must be a number (got {value!r})")
        elif not value > 0:
            problems.append(f"{name} must be > 0 (got {value!r})")

    problems: list[str] = []
    if not integer(params.width) or params.width < 1:
        problems.append(f"width must be an integer >= 1 (got {params.width!r})")
    positive_number("balance_temperature", params.balance_temperature)
    if not integer(params.max_path_tokens) or params.max_path_tokens < 1:
        problems.append(f"max_path_tokens must be an integer >= 1 (got {params.max_path_tokens!r})")
    if params.max_depth is not None and (not integer(params.max_depth) or params.max_depth < 1):
        problems.append(f"max_depth must be an integer >= 1 (got {params.max_depth!r})")
    if not integer(params.beam_expansion) or params.beam_expansion < 1:
        problems.append(f"beam_expansion must be an integer >= 1 (got {params.beam_expansion!r})")
    if params.tie_order not in TIE_ORDERS:
        problems.append(f"tie_order must be one of {', '.join(TIE_ORDERS)}")
    if params.share_rounding not in SHARE_ROUNDINGS:
        problems.append(f"share_rounding must be one of {', '.join(SHARE_ROUNDINGS)}")
    ratio = params.truncate_ratio
    if ratio is not None and (
        isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1
    ):
        problems.append(f"truncate_ratio must be a number in (0, 1] (got {ratio!r})")
    positive_number("particle_temperature", params.particle_temperature)
    if not integer(params.seed) or params.seed < 0:
        problems.append(f"seed must be an integer >= 0 (got {params.seed!r})")
    if problems:
        raise ConfigError("; ".join(problems), "fix the search configuration")


def get_strategy(name: str, params: StrategyParams | Mapping[str, Any]) -> Strategy:
    """The strategy called `name` (a key of STRATEGIES) with validated `params`."""
    factory = STRATEGIES.get(name)
    if factory is None:
        raise ConfigError(
            f"unknown search method {name!r}", f"use one of {', '.join(sorted(STRATEGIES))}"
        )
    if isinstance(params, StrategyParams):
        _validate(params)
    else:
        params = make_params(params)
    return factory(params)
