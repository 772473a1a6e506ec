"""Compute spent by a run: tokens, requests, time, and FLOPs = 2 × parameters × tokens.

The paper's compute axis is counted too: the tokens the policy generated (the sum of the
completion tokens of every step request, which the authors' code reports as `total_tokens`);
`COMPUTE_AXES` names both axes for plots.

FLOPs are counted separately for the policy and the reward model, each as 2 × P × tokens,
the usual forward-pass estimate. Policy tokens are prompt + completion tokens as the server
reported them (prefix-cache hits are not discounted, so this is the compute of an engine
without a prefix cache); reward tokens are the tokens the reward server reported processing.

The parameter count P of each model comes from, in order: the `--policy-params` /
`--reward-params` flag, the run's config (`policy_params` / `reward_params`), the known-models
table below (matched on the model id), and, for the simulator's models (ids starting with
`sim-`), an assumed 7e9. The report states which source each number came from; with none,
FLOPs are left out and the report says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rebase_cli.errors import UsageError
from rebase_cli.reports.loading import RunData

SIMULATED_PARAMS = 7e9
PAPER_COMPUTE_FORMULA = "policy generated tokens = sum of completion tokens of every step request"
# Axis name → (key of an accuracy row, axis label).
COMPUTE_AXES: dict[str, tuple[str, str]] = {
    "flops": (
        "flops_per_problem",
        "inference FLOPs per problem (2 × params × tokens, policy + reward)",
    ),
    "paper": (
        "paper_compute_per_problem",
        "policy generated tokens per problem (the paper's compute)",
    ),
    "tokens": ("tokens_per_problem", "tokens per problem (policy prompt + completion + reward)"),
    "seconds": ("seconds_per_problem", "search time per problem (s)"),
}

# Model id patterns (lower case, "_" read as "-") → parameter count as published on the model
# cards. More specific patterns come first: the PRM before the policy of the same family.
KNOWN_MODELS: tuple[tuple[str, str, float], ...] = (
    (r"qwen2\.5-math-prm-7b", "Qwen2.5-Math-PRM-7B", 7.07e9),
    (r"qwen2\.5-math-1\.5b", "Qwen2.5-Math-1.5B", 1.54e9),
    (r"qwen2\.5-math-7b", "Qwen2.5-Math-7B", 7.62e9),
    (r"math-shepherd", "Math-Shepherd-Mistral-7B", 7.24e9),
    (r"llemma-34b", "Llemma-34B", 33.7e9),
    (r"llemma-7b", "Llemma-7B", 6.74e9),
    (r"mistral-7b", "Mistral-7B", 7.24e9),
    (r"smollm2-135m", "SmolLM2-135M", 1.35e8),
)

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBtT]?)\s*$")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


def parse_params(text: str) -> float:
    """'7e9', '7B', '1.5b', '135M' or '6740000000' as a positive number of parameters."""
    match = _SIZE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"invalid parameter count {text!r}", "write it like 7e9, 7B, 1.5B or 135M")
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]


@dataclass(frozen=True)
class ModelParams:
    """P for one model and where it came from: flag, config, table, simulator or unknown."""

    model: str | None
    params: float | None
    source: str


def resolve_params(
    model: str | None, flag: float | None, config: dict, config_key: str
) -> ModelParams:
    """Apply the order of sources in the module docstring."""
    if flag is not None:
        return ModelParams(model, float(flag), "flag")
    configured = config.get(config_key)
    if isinstance(configured, (int, float)) and configured > 0:
        return ModelParams(model, float(configured), "config")
    if model:
        key = model.lower().replace("_", "-")
        for pattern, name, params in KNOWN_MODELS:
            if re.search(pattern, key):
                return ModelParams(model, params, f"known-models table ({name})")
        if key.startswith("sim-") or key.rsplit("/", 1)[-1].startswith("sim-"):
            return ModelParams(model, SIMULATED_PARAMS, "simulator model, assumed 7e9")
    return ModelParams(model, None, "unknown")


def compute_summary(
    data: RunData, policy_params: float | None = None, reward_params: float | None = None
) -> dict:
    """The `compute` section of a run's report (see report_schema.json).

    Totals are over every problem of the run; per-problem figures divide by the problems that
    started (at least their root committed), so unstarted problems of a partial run do not
    dilute them."""
    problems = data.problems
    totals = {name: int(values.sum()) for name, values in problems.counters.items()}
    started = int((problems.depth_completed >= 0).sum())
    nodes = int((data.nodes.depth > 0).sum())
    answers = len(data.answers)
    config = data.run.config
    policy = resolve_params(data.run.policy_model, policy_params, config, "policy_params")
    reward = resolve_params(data.run.reward_model, reward_params, config, "reward_params")
    policy_tokens = totals["policy_prompt_tokens"] + totals["policy_completion_tokens"]
    policy_flops = _flops(policy.params, policy_tokens)
    reward_flops = _flops(reward.params, totals["reward_tokens"])
    if totals["reward_tokens"] == 0 and reward_flops is None:
        reward_flops = 0.0  # no reward model used: zero compute, whatever its size
    total = None if policy_flops is None or reward_flops is None else policy_flops + reward_flops
    return {
        **totals,
        "problem_seconds": float(np.sum(problems.elapsed_seconds)),
        "wall_seconds": float(data.run.wall_seconds or 0.0),
        "problems_started": started,
        "nodes": nodes,
        "nodes_per_problem": _per(nodes, started),
        "finished_answers": answers,
        "answers_per_problem": _per(answers, started),
        "paper": {
            "formula": PAPER_COMPUTE_FORMULA,
            "tokens": totals["policy_completion_tokens"],
            "per_problem": _per(totals["policy_completion_tokens"], started),
        },
        "flops": {
            "policy": _flops_entry(policy, policy_tokens, policy_flops),
            "reward": _flops_entry(reward, totals["reward_tokens"], reward_flops),
            "total": total,
            "per_problem": None if total is None else _per(total, started),
        },
    }


def _flops(params: float | None, tokens: int) -> float | None:
    return None if params is None else 2.0 * params * tokens


def _flops_entry(params: ModelParams, tokens: int, flops: float | None) -> dict:
    return {
        "model": params.model,
        "params": params.params,
        "params_source": params.source,
        "tokens": tokens,
        "flops": flops,
    }


def _per(value: float, count: int) -> float | None:
    return None if count == 0 else value / count
