"""What a run says about its reproducibility when several processes searched it."""

from __future__ import annotations

import json

from rebase_cli.runner.reproducibility import merge, read

VLLM = {"server": "vllm", "reproducible": True, "reproducible_why": "vLLM", "token_counts": "exact"}
SGLANG = {"server": "sglang", "reproducible": False, "reproducible_why": "ignores seeds"}


def test_a_fresh_run_takes_the_current_process_facts():
    assert merge(None, VLLM) == VLLM


def test_a_resume_never_makes_a_run_more_reproducible_than_it_was():
    assert merge(SGLANG, {**SGLANG, "server": "sglang"})["reproducible"] is False
    merged = merge({**SGLANG, "server": "vllm"}, VLLM)
    assert merged["reproducible"] is False and "earlier part" in merged["reproducible_why"]
    switched = merge(VLLM, {**VLLM, "server": "sglang-deterministic"})
    assert switched["reproducible"] is False
    assert "vllm, then sglang-deterministic" in switched["reproducible_why"]
    assert merge(VLLM, VLLM)["reproducible"] is True


def test_capabilities_from_before_server_identification_are_not_trusted():
    merged = merge({"n_supported": True}, VLLM)
    assert merged["reproducible"] is False and "predates" in merged["reproducible_why"]


def test_approximate_token_counts_stay_approximate():
    assert merge({**VLLM, "token_counts": "approximate"}, VLLM)["token_counts"] == "approximate"


def test_read_says_unknown_for_runs_without_a_plan():
    assert read(None).line.startswith("unknown")
    assert read(json.dumps(VLLM)).line == "yes (vLLM)"
    assert read(json.dumps(SGLANG)).line == "no (ignores seeds)"
