"""Whole-solution sampling: splitting a completion like step-by-step generation would, scoring
every step with one setwise /v1/score request (or the per-path fallback), and the stored tree.

The end-to-end tests run real simulator processes (one serving the setwise readout, as SGLang
does with --disable-radix-cache --chunked-prefill-size -1, one refusing it as SGLang's defaults
do) and real `rebase` children on a real SQLite file.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.clients import prm_text
from rebase_cli.domain import Completion, TerminalReason
from rebase_cli.prompts import load_template
from rebase_cli.runner.whole_sample import split_completion
from tests.search_helpers import (
    check_allocations,
    diff_runs,
    dump_run,
    query,
    rebase,
    run_ids,
    search_args,
    start_simulator,
)

TEMPLATE = load_template("llemma-metamath")
DELIM = TEMPLATE.step_delimiter
BUDGET = 8
LIMIT = 6
WHOLE = ["--method", "sample", "--sample-mode", "whole"]


def _split(text: str, finish: str = "stop", tokens: int = 40, **limits: int):
    completion = Completion(text, finish, 2 if finish == "stop" else None, tokens)
    return split_completion(
        completion,
        TEMPLATE,
        max_depth=limits.get("max_depth", 25),
        max_path_tokens=limits.get("max_path_tokens", 1024),
    )


def test_a_completion_splits_into_the_steps_step_by_step_generation_would_make() -> None:
    text = DELIM.join(["Step 1: 2 + 2 = 4.", "Step 2: 4 * 3 = 12.", "The answer is: 12"])
    steps = _split(text, tokens=30)
    assert [s.text for s in steps] == text.split(DELIM)
    assert [s.terminal_reason for s in steps] == [None, None, TerminalReason.ANSWER]
    assert steps[-1].answer == "12"
    assert steps[-1].path_tokens == 30  # every token lands on a step
    assert [s.completion.matched_stop for s in steps[:-1]] == [DELIM, DELIM]


def test_a_path_is_cut_at_its_first_answer_and_at_the_limits() -> None:
    text = DELIM.join(["The answer is: 3", "Step 2: more text", "The answer is: 4"])
    assert [s.answer for s in _split(text)] == ["3"]
    long = DELIM.join(f"Step {k}: {k} + 1 = {k + 1}." for k in range(1, 9))
    capped = _split(long, max_depth=3)
    assert len(capped) == 3 and capped[-1].terminal_reason is TerminalReason.MAX_DEPTH
    cut = _split(long, finish="length", tokens=64, max_path_tokens=64)
    assert cut[-1].terminal_reason is TerminalReason.MAX_TOKENS
    eos = _split("Step 1: no answer here.", tokens=5)
    assert [s.terminal_reason for s in eos] == [TerminalReason.EOS]


step_texts = st.sampled_from(
    ["Step 1: 2 + 2 = 4.", "Step 2: 4 * 3 = 12.", "So we get 7.", "The answer is: 12", " "]
)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(step_texts, min_size=1, max_size=12),
    finish=st.sampled_from(["stop", "length"]),
    tokens=st.integers(0, 400),
    max_depth=st.integers(1, 10),
    max_path_tokens=st.integers(1, 400),
)
def test_split_paths_end_exactly_once_within_the_limits(
    pieces: list[str], finish: str, tokens: int, max_depth: int, max_path_tokens: int
) -> None:
    text = DELIM.join(pieces)
    steps = _split(
        text, finish=finish, tokens=tokens, max_depth=max_depth, max_path_tokens=max_path_tokens
    )
    assert 1 <= len(steps) <= max_depth
    # Only the last step ends the path, and it always does: every path is a finished one.
    assert all(s.terminal_reason is None for s in steps[:-1])
    assert steps[-1].terminal_reason is not None
    assert all(s.path_tokens < max_path_tokens for s in steps[:-1])
    # Token counts never exceed what was generated and grow along the path.
    assert steps[-1].path_tokens <= tokens
    assert [s.path_tokens for s in steps] == sorted(s.path_tokens for s in steps)
    # The steps are the completion's own text, in order.
    assert DELIM.join(s.text for s in steps) == DELIM.join(
        TEMPLATE.split_steps(text)[: len(steps)] or [text]
    )


@pytest.fixture(scope="module")
def setwise_sim():
    with start_simulator("--score-extraction") as simulator:
        yield simulator


@pytest.fixture(scope="module")
def plain_sim():
    with start_simulator() as simulator:
        yield simulator


def _whole_run(sim, db: Path) -> dict:
    done = rebase(db, *search_args(sim.url, budget=BUDGET, limit=LIMIT, extra=WHOLE))
    assert done.returncode == 0, done.stdout + done.stderr
    return dump_run(db, run_ids(db)[-1])


def test_setwise_scoring_and_its_fallback_store_the_same_tree(
    setwise_sim, plain_sim, tmp_path: Path
) -> None:
    setwise = _whole_run(setwise_sim, tmp_path / "setwise.db")
    fallback = _whole_run(plain_sim, tmp_path / "fallback.db")
    for dump in (setwise, fallback):
        assert check_allocations(dump, BUDGET) == []  # sample's width accounting, exactly
        for problem in dump.values():
            finished = [n for n in problem["nodes"].values() if n["terminal"]]
            assert len(finished) == BUDGET
            assert problem["row"]["policy_requests"] == 1  # the N paths in one request
    # Only the number of scoring requests differs (and what they cost).
    for dump in (setwise, fallback):
        for problem in dump.values():
            problem["row"] = {
                k: v
                for k, v in problem["row"].items()
                if k not in ("reward_requests", "reward_tokens")
            }
    assert diff_runs(setwise, fallback) == []
    setwise_requests = query(tmp_path / "setwise.db", "SELECT reward_requests FROM problem")
    fallback_requests = query(tmp_path / "fallback.db", "SELECT reward_requests FROM problem")
    assert {r for (r,) in setwise_requests} == {1}  # one request scores every step of every path
    assert {r for (r,) in fallback_requests} == {BUDGET}  # one per path
    capabilities = [
        json.loads(query(tmp_path / name, "SELECT capabilities_json FROM run")[0][0])
        for name in ("setwise.db", "fallback.db")
    ]
    assert [c["setwise_score"] for c in capabilities] == [True, False]


def test_every_step_score_is_what_a_step_by_step_request_gets(setwise_sim, tmp_path: Path) -> None:
    db = tmp_path / "whole.db"
    dump = _whole_run(setwise_sim, db)
    question = query(db, "SELECT question FROM problem WHERE dataset_index = 0")[0][0]
    nodes = dump[0]["nodes"]
    prm = TEMPLATE.prm
    checked = 0
    for (depth, ordinal), node in sorted(nodes.items()):
        if depth == 0 or ordinal > 2:
            continue
        steps, key = [], (depth, ordinal)
        while key[0] > 0:
            steps.append(nodes[key]["text"])
            key = nodes[key]["parent"]
        steps.reverse()
        body = {
            "query": prm_text.shepherd_query(question, steps[:-1], prm),
            "items": [prm_text.shepherd_item(steps[-1], prm)],
            "label_token_ids": [prm.good_token_id, prm.bad_token_id],
            "apply_softmax": True,
        }
        reply = httpx.post(f"{setwise_sim.url}/v1/score", json=body, timeout=30).json()
        assert reply["scores"][0][0] == pytest.approx(node["score"], abs=1e-12)
        checked += 1
    assert checked >= 6


def test_the_simulator_refuses_setwise_scoring_as_sglang_does_by_default(plain_sim) -> None:
    body = {
        "query": "What is 1 + 1? ",
        "items": ["1 + 1 = 2. ки"],
        "label_token_ids": [648, 387],
        "score_extraction_token": "ки",
    }
    reply = httpx.post(f"{plain_sim.url}/v1/score", json=body, timeout=30)
    assert reply.status_code == 400
    assert "--disable-radix-cache" in reply.json()["message"]
