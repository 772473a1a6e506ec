"""The policy client's sampling plan per server kind, against the simulator's flavours and small
fakes over real HTTP: distinct children on every server, reproducible ones where the server
allows it, exact token counts from token ids, and vLLM's EOS read as EOS."""

from __future__ import annotations

import asyncio

import pytest

from rebase_cli.clients import PolicyClient, RetryPolicy
from rebase_cli.clients.policy import StepRequest, parse_reply
from rebase_cli.datasets import load_dataset
from rebase_cli.domain import TerminalReason
from rebase_cli.prompts import load_template
from rebase_cli.runner.steps import classify_step
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.inprocess import start_in_thread
from tests.http_fakes import Reply, ScriptedServer, generate_handler, models_handler

FAST = RetryPolicy(
    max_attempts=3, timeout=5.0, max_total_wait=10.0, backoff_initial=0.001, backoff_max=0.01
)
TEMPLATE = load_template("llemma-metamath")
FLAVOURS = ("sglang", "sglang-deterministic", "vllm", "openai")
N = 6


@pytest.fixture(scope="module")
def problems():
    return load_dataset("gsm8k").problems[:10]


@pytest.fixture(scope="module")
def servers(problems):
    running = {
        flavour: start_in_thread(
            SimConfig(role="policy", flavour=flavour, port=0, datasets=("gsm8k",)),
            problems=problems,
        )
        for flavour in FLAVOURS
    }
    yield running
    for server in running.values():
        server.stop()


def expand_twice(url: str, prompt: str, *, server: str | None = None, max_n: int | None = None):
    """Two expansions of the same parent with the same seed, by two clients (as an
    uninterrupted run and a resumed one would), and the first client's capabilities."""

    async def once():
        client = PolicyClient(url, retry=FAST, server=server, max_n=max_n)
        try:
            batch = await client.expand(
                prompt, N, stop=list(TEMPLATE.stop), max_new_tokens=256, temperature=1.0, seed=77
            )
            return batch, client.capabilities
        finally:
            await client.aclose()

    async def go():
        return await once(), await once()

    return asyncio.run(go())


EXPECTED = {
    # flavour: (requests per parent, reproducible, seed recorded on the nodes)
    "sglang": (1, False, False),
    "sglang-deterministic": (1, True, True),
    "vllm": (1, True, True),
    "openai": (N, False, True),  # ignores n: one request per child
}


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_server_gets_distinct_children_and_reproducible_ones_where_it_can(
    servers, problems, flavour
):
    server = servers[flavour]
    server.sim.reset()
    prompt = TEMPLATE.render(problems[2].question)
    (first, caps), (second, _) = expand_twice(server.url, prompt)
    requests, reproducible, seeded = EXPECTED[flavour]
    assert caps["server"] == flavour and caps["server_detected"] is True
    assert caps["reproducible"] is reproducible and caps["reproducible_why"]
    assert len(first.completions) == N and first.requests == requests
    assert first.seeded is seeded
    # No child was sampled with a seed already used for this prompt by the first client:
    # the children are N distinct samples (texts may still agree, as a real model's can).
    duplicates = server.sim.duplicate_samples
    if reproducible:
        assert [c.text for c in second.completions] == [c.text for c in first.completions]
    if flavour == "sglang":
        assert duplicates == 0  # seeds ignored: every sample is new, the second run's too
    else:
        # Exactly the second client's repeats. The plain server does apply the seed (as
        # `transformers serve` sets torch's global seed), but says nothing that tells the
        # client so, hence "not reproducible" above.
        assert duplicates == N
    assert len({c.text for c in first.completions}) > 1


def test_deterministic_sglang_without_the_plan_collapses_the_children(servers, problems):
    """The failure the plan prevents: telling the client the server is vLLM makes it send one
    n-request, and deterministic SGLang answers it with N identical children."""
    server = servers["sglang-deterministic"]
    server.sim.reset()
    prompt = TEMPLATE.render(problems[3].question)
    (batch, caps), _ = expand_twice(server.url, prompt, server="vllm")
    assert caps["server_detected"] is False
    assert len({c.text for c in batch.completions}) == 1
    assert server.sim.duplicate_samples >= N - 1


def test_deterministic_sglang_with_one_sample_per_request_uses_n_seeded_requests(servers, problems):
    server = servers["sglang-deterministic"]
    server.sim.reset()
    prompt = TEMPLATE.render(problems[4].question)
    (first, caps), (second, _) = expand_twice(server.url, prompt, max_n=1)
    assert first.requests == N and caps["sampling_plan"].endswith("seed + i per child")
    assert [c.text for c in first.completions] == [c.text for c in second.completions]
    assert server.sim.duplicate_samples == N  # only the second client's repeats


@pytest.mark.parametrize("flavour", ["sglang", "sglang-deterministic", "vllm"])
def test_token_counts_are_the_servers_token_ids(servers, problems, flavour):
    from rebase_cli.sim.tokenizer import count_tokens

    server = servers[flavour]
    prompt = TEMPLATE.render(problems[5].question)
    (batch, caps), _ = expand_twice(server.url, prompt)
    assert caps["token_counts"] == "exact"
    for completion in batch.completions:
        assert completion.exact_tokens
        # The simulator's ids: one per token of the text, plus the stop/EOS token.
        assert completion.completion_tokens == count_tokens(completion.text) + 1
    assert batch.completion_tokens == sum(c.completion_tokens for c in batch.completions)


# --- small fakes: exact token ids, vLLM's EOS --------------------------------------------------


@pytest.fixture
def vllm_fake():
    fake = ScriptedServer().start()
    fake.route("/v1/models", models_handler("served-model"))
    fake.route("/version", lambda request: Reply.json({"version": "0.33.0"}))
    yield fake
    fake.stop()


def vllm_choice(index: int, text: str, stop_reason, token_ids, finish_reason="stop") -> dict:
    return {
        "index": index,
        "text": text,
        "finish_reason": finish_reason,
        "stop_reason": stop_reason,
        "token_ids": token_ids,
    }


def test_node_tokens_are_the_token_id_counts_not_a_share_of_the_usage(vllm_fake):
    def reply(request):
        assert request.body["return_token_ids"] is True
        choices = [
            vllm_choice(0, "a much longer step text", "\n", [5, 6]),
            vllm_choice(1, "b", "\n", [7, 8, 9, 10, 11, 12, 13]),
        ]
        return Reply.json(
            {"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 9}}
        )

    vllm_fake.route("/v1/completions", reply)

    async def go():
        client = PolicyClient(vllm_fake.url, retry=FAST)
        batch = await client.expand("p", 2, stop=["\n"], max_new_tokens=9, temperature=1.0, seed=1)
        await client.aclose()
        return batch, client.capabilities

    batch, caps = asyncio.run(go())
    assert [c.completion_tokens for c in batch.completions] == [2, 7]  # by text length: [8, 1]
    assert caps["token_counts"] == "exact" and caps["server"] == "vllm"


@pytest.mark.parametrize("bad_ids", [[5, True], [5, -1], [5, 6.0], [5, "6"], [5, None]], ids=repr)
def test_token_ids_that_are_not_all_non_negative_ints_are_not_counted(bad_ids):
    """One bad id in any choice: every choice's count is the usage split by text length."""
    data = {
        "choices": [
            vllm_choice(0, "a much longer step text", "\n", [5, 6]),
            vllm_choice(1, "b", "\n", bad_ids),
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 9},
    }
    reply = parse_reply(data, 2, "", ["\n"])
    assert [c.completion_tokens for c in reply.completions] == [9, 0]  # 9 split 23:1
    assert not reply.exact_tokens
    exact = parse_reply({**data, "choices": data["choices"][:1]}, 1, "", ["\n"])
    assert [c.completion_tokens for c in exact.completions] == [2]


def test_vllm_eos_is_terminal_eos_and_not_a_step_end(vllm_fake):
    def reply(request):
        choices = [
            vllm_choice(0, "Step 3: so we are done", None, [1, 2, 3, 2]),  # EOS, no answer
            vllm_choice(1, "Step 3: 4 + 4 = 8.", "\n", [4, 5]),  # step delimiter
        ]
        return Reply.json(
            {"choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 6}}
        )

    vllm_fake.route("/v1/completions", reply)

    async def go():
        client = PolicyClient(vllm_fake.url, retry=FAST)
        batch = await client.expand(
            "p", 2, stop=list(TEMPLATE.stop), max_new_tokens=64, temperature=1.0, seed=1
        )
        await client.aclose()
        return batch

    eos, step = asyncio.run(go()).completions
    assert eos.eos and not step.eos
    limits = {"depth": 3, "path_tokens": 10, "max_depth": 25, "max_path_tokens": 1024}
    assert classify_step(eos, TEMPLATE, **limits) == (TerminalReason.EOS, None)
    assert classify_step(step, TEMPLATE, **limits) == (None, None)


def test_a_stop_string_found_in_the_text_is_never_eos():
    data = {"choices": [vllm_choice(0, "Step 1: x.\nStep 2", None, None)], "usage": {}}
    [completion] = parse_reply(data, 1, "", stop=["\n"]).completions
    assert completion.text == "Step 1: x." and completion.matched_stop == "\n"
    assert not completion.eos


@pytest.mark.parametrize("flavour", ["sglang-deterministic", "sglang"])
def test_sglang_gets_a_whole_level_in_one_generate_batch(servers, problems, flavour):
    """Three parents (different prompts, n, token caps and seeds) in one /generate request.
    Deterministic SGLang: each parent's children are the ones its own request gets, seeded
    seed + i. Default SGLang (seeds ignored): as many fresh children per parent."""
    server = servers[flavour]
    steps = [
        StepRequest(TEMPLATE.render(problems[k].question), n, TEMPLATE.stop, cap, 1.0, seed=seed)
        for k, n, cap, seed in ((5, 3, 256, 11), (6, 1, 64, 12), (7, 2, 256, 13))
    ]

    async def go():
        client = PolicyClient(server.url, retry=FAST)
        try:
            level = await client.expand_level(steps)
            requests = server.sim.stats()["requests"]
            alone = [await client.expand_level([s]) for s in steps]
            return level, requests, alone
        finally:
            await client.aclose()

    server.sim.reset()
    level, requests, alone = asyncio.run(go())
    assert requests == {"/generate": 1}
    assert [b.requests for b in level] == [1, 0, 0]
    assert [len(b.completions) for b in level] == [3, 1, 2]
    deterministic = flavour == "sglang-deterministic"
    for batch, [own] in zip(level, alone, strict=True):
        assert batch.seeded is deterministic
        assert batch.prompt_tokens == own.prompt_tokens > 0
        if deterministic:
            assert batch.completions == own.completions
    # Deterministic: only the second asking of each child repeats a sample; default: none.
    assert server.sim.duplicate_samples == (6 if deterministic else 0)


def test_default_sglang_batch_sends_no_seed():
    """SGLang without --enable-deterministic-inference ignores seeds, so none is sent: one
    entry per child, each parent's sampling parameters, no `sampling_seed`."""
    fake = ScriptedServer().start()
    bodies = []

    def generate(request):
        bodies.append(request.body)
        return generate_handler()(request)

    fake.route("/v1/models", models_handler("served-model"))
    fake.route("/server_info", lambda request: Reply.json({"version": "0.5.23"}))
    fake.route("/generate", generate)
    steps = [
        StepRequest("p", 2, ("\n",), 64, 0.7, seed=5),
        StepRequest("q", 1, (), 32, 0.7, seed=9),
    ]

    async def go():
        client = PolicyClient(fake.url, retry=FAST)
        try:
            return await client.expand_level(steps), client.capabilities
        finally:
            await client.aclose()

    try:
        level, caps = asyncio.run(go())
    finally:
        fake.stop()
    [body] = bodies
    assert body["text"] == ["p", "p", "q"]
    assert all("sampling_seed" not in p and "n" not in p for p in body["sampling_params"])
    assert [p["max_new_tokens"] for p in body["sampling_params"]] == [64, 64, 32]
    assert [len(b.completions) for b in level] == [2, 1] and not any(b.seeded for b in level)
    assert caps["server"] == "sglang" and caps["reproducible"] is False
    assert caps["sampling_plan"].startswith("native /generate batch, one entry per child")
