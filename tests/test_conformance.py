"""Our request bodies and the simulator's responses against the real servers' own classes.

The fixtures in tests/fixtures/conformance/ hold the fields of SGLang's and vLLM's request and
response classes as their wheels define them (written by scripts/conformance_fixtures.py; the
versions, wheel checksums and source files are recorded in each). Nothing here imports sglang
or vllm. A body conforms when every key is a field of the class, every required field is
there, and each value's JSON type is one the field's annotation admits.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from rebase_cli.clients import PolicyClient, RetryPolicy, make_reward_client
from rebase_cli.clients.policy import parse_generate_reply, parse_reply
from rebase_cli.datasets import load_dataset
from rebase_cli.prompts import load_template
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.inprocess import start_in_thread
from tests.http_fakes import Reply, ScriptedServer, completions_handler, models_handler

FIXTURES = Path(__file__).parent / "fixtures" / "conformance"
SGLANG = json.loads((FIXTURES / "sglang-0.5.23.json").read_text())
VLLM = json.loads((FIXTURES / "vllm-0.33.0.json").read_text())
FAST = RetryPolicy(max_attempts=2, timeout=5.0, backoff_initial=0.001, backoff_max=0.01)
TEMPLATE = load_template("llemma-metamath")

# The annotation words that admit a JSON value of each type.
_ADMITS = {
    bool: ("bool",),
    int: ("int", "float"),
    float: ("float",),
    str: ("str", "Literal"),
    list: ("List", "list", "Sequence"),
    dict: ("Dict", "dict", "Any"),
    type(None): ("Optional", "None"),
}


def expanded(annotation: str, fixture: dict) -> str:
    """`annotation` with the fixture's type aliases written out, and its classes marked as
    admitting JSON objects."""
    for _ in range(3):
        for alias, meaning in fixture["aliases"].items():
            if alias in annotation:
                annotation = annotation.replace(alias, f"({meaning})")
    for name in fixture["classes"]:
        if name in annotation:
            annotation += " dict"
    return annotation


def violations(body: dict[str, Any], fixture: dict, name: str) -> list[str]:
    """What in `body` the class `name` of `fixture` would not accept."""
    fields = fixture["classes"][name]["fields"]
    problems = [f"{key}: not a field of {name}" for key in body if key not in fields]
    problems += [
        f"{key}: required by {name}"
        for key, field in fields.items()
        if field["required"] and key not in body
    ]
    for key, value in body.items():
        if key in fields:
            annotation = expanded(fields[key]["annotation"], fixture)
            words = _ADMITS[bool if isinstance(value, bool) else type(value)]
            if "Any" not in annotation and not any(word in annotation for word in words):
                problems.append(f"{key}: {type(value).__name__} not in {annotation}")
    return problems


def test_fixtures_record_their_source():
    for fixture, package in ((SGLANG, "sglang"), (VLLM, "vllm")):
        assert fixture["package"] == package and fixture["wheel"].startswith(package)
        assert len(fixture["wheel_sha256"]) == 64 and fixture["files"]
        assert all(c["unresolved_bases"] == [] for c in fixture["classes"].values())


# --- what our clients send ---------------------------------------------------------------------


def policy_bodies(server_kind: str, max_n: int | None = None) -> list[Any]:
    fake = ScriptedServer().start()
    fake.route("/v1/models", models_handler("m"))
    fake.route("/v1/completions", completions_handler())
    fake.route(
        "/generate",
        lambda request: Reply.json(
            [
                {
                    "text": "s",
                    "output_ids": [1],
                    "meta_info": {
                        "finish_reason": {"type": "stop", "matched": "\n"},
                        "prompt_tokens": 3,
                    },
                }
                for _ in request.body["text"]
            ]
        ),
    )

    async def go():
        client = PolicyClient(fake.url, retry=FAST, server=server_kind, max_n=max_n)
        await client.expand("Q\n", 3, stop=["\n"], max_new_tokens=64, temperature=1.0, seed=9)
        await client.aclose()

    try:
        asyncio.run(go())
        return [r.body for r in fake.requests if r.path in ("/v1/completions", "/generate")]
    finally:
        fake.stop()


@pytest.mark.parametrize(
    ("server_kind", "max_n"),
    [("vllm", None), ("sglang", 1), ("openai", None)],  # SGLang: n=1 requests when asked
)
def test_completion_requests_are_valid_for_both_servers(server_kind, max_n):
    body = policy_bodies(server_kind, max_n)[0]
    assert violations(body, SGLANG, "CompletionRequest") == []
    assert violations(body, VLLM, "CompletionRequest") == []
    assert body.get("return_token_ids") is (True if server_kind != "openai" else None)


@pytest.mark.parametrize("server_kind", ["sglang-deterministic", "sglang"])
def test_native_generate_batch_is_valid_for_sglang(server_kind):
    [body] = policy_bodies(server_kind)
    assert violations(body, SGLANG, "GenerateReqInput") == []
    for params in body["sampling_params"]:
        assert violations(params, SGLANG, "SamplingParams") == []
    seeds = [p.get("sampling_seed") for p in body["sampling_params"]]
    assert seeds == ([9, 10, 11] if server_kind == "sglang-deterministic" else [None] * 3)


def reward_body(protocol: str, path: str, reply: Any) -> dict:
    fake = ScriptedServer().start()
    fake.route(path, lambda request: Reply.json(reply))

    async def go():
        client = make_reward_client(protocol, fake.url, model="prm", retry=FAST)
        await client.score("Q", ["s1"], ["s2"])
        await client.aclose()

    try:
        asyncio.run(go())
        [request] = fake.requests_to(path)
        return request.body
    finally:
        fake.stop()


def test_reward_requests_are_valid_for_their_servers():
    score = reward_body("score", "/v1/score", {"scores": [[0.6, 0.4]], "model": "prm"})
    assert violations(score, SGLANG, "ScoringRequest") == []
    classify = reward_body("classify", "/classify", [{"embedding": [0.3]}])
    assert violations(classify, SGLANG, "EmbeddingReqInput") == []
    pooling = reward_body(
        "pooling", "/pooling", {"data": [{"index": 0, "data": [[0.1, 0.9]]}], "model": "prm"}
    )
    assert violations(pooling, VLLM, "PoolingCompletionRequest") == []
    assert pooling["task"] in VLLM["literals"]["PoolingTask"]


# --- what the simulator answers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sims():
    problems = load_dataset("gsm8k").problems[:3]
    running = {
        flavour: start_in_thread(
            SimConfig(role="both", flavour=flavour, port=0, datasets=("gsm8k",)),
            problems=problems,
        )
        for flavour in ("sglang", "vllm")
    }
    yield running, problems
    for sim in running.values():
        sim.stop()


@pytest.mark.parametrize(("flavour", "fixture"), [("sglang", SGLANG), ("vllm", VLLM)])
def test_simulated_completions_conform_to_the_servers_response_classes(sims, flavour, fixture):
    running, problems = sims
    body = {
        "model": "sim-policy",
        "prompt": TEMPLATE.render(problems[0].question),
        "n": 2,
        "seed": 1,
        "max_tokens": 64,
        "stop": ["\n"],
        "return_token_ids": True,
    }
    reply = httpx.post(running[flavour].url + "/v1/completions", json=body).json()
    assert violations(reply, fixture, "CompletionResponse") == []
    assert violations(reply["usage"], fixture, "UsageInfo") == []
    for choice in reply["choices"]:
        assert violations(choice, fixture, "CompletionResponseChoice") == []
    bad = httpx.post(running[flavour].url + "/v1/completions", json={**body, "n": 0}).json()
    assert violations(bad, fixture, "ErrorResponse") == []
    if flavour == "vllm":
        assert violations(bad["error"], fixture, "ErrorInfo") == []


def test_simulated_reward_replies_conform(sims):
    running, problems = sims
    score = httpx.post(
        running["sglang"].url + "/v1/score",
        json={"query": problems[0].question, "items": ["a ки"], "label_token_ids": [648, 387]},
    ).json()
    assert violations(score, SGLANG, "ScoringResponse") == []
    pooled = httpx.post(
        running["vllm"].url + "/pooling",
        json={"model": "sim-prm", "input": ["a<extra_0>", "b<extra_0>"], "task": "token_classify"},
    ).json()
    assert violations(pooled, VLLM, "PoolingResponse") == []
    for item in pooled["data"]:
        assert violations(item, VLLM, "PoolingResponseData") == []


# --- responses shaped by the classes, fed to our parsers ---------------------------------------


def test_parsers_read_eos_and_token_ids_in_each_servers_shape():
    sglang_choice = {"index": 0, "text": "The answer is: 4", "finish_reason": "stop"}
    sglang_choice.update(matched_stop=2, token_ids=[5, 6, 7, 2])
    vllm_choice = {"index": 0, "text": "The answer is: 4", "finish_reason": "stop"}
    vllm_choice.update(stop_reason=None, token_ids=[5, 6, 7, 2])
    for choice, fixture in ((sglang_choice, SGLANG), (vllm_choice, VLLM)):
        response = {"id": "c", "model": "m", "choices": [choice], "usage": {"prompt_tokens": 3}}
        assert violations(response, fixture, "CompletionResponse") == []
        assert violations(choice, fixture, "CompletionResponseChoice") == []
        [completion] = parse_reply(response, 1, "", stop=["\n"]).completions
        assert completion.completion_tokens == 4 and completion.exact_tokens
        assert completion.eos or completion.matched_stop == 2  # both say: the model ended
    native = [
        {
            "text": "Step 1: x",
            "output_ids": [1, 2, 3],
            "meta_info": {"finish_reason": {"type": "length", "length": 3}, "prompt_tokens": 9},
        }
    ]
    [completion] = parse_generate_reply(native, [1], "", [["\n"]])[0].completions
    assert (completion.finish_reason, completion.completion_tokens) == ("length", 3)
