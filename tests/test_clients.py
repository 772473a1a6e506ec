"""Policy and reward clients against a real HTTP server (tests/http_fakes.py) through the real
openai client: request shapes, response parsing, retries, and the errors users see."""

from __future__ import annotations

import asyncio
import json
import math
import re
import socket
import threading

import httpx
import openai
import pytest

from rebase_cli.clients import PolicyClient, RetryPolicy, make_reward_client
from rebase_cli.clients.policy import apportion
from rebase_cli.clients.retry import MalformedResponse, backoff, out_of_tries
from rebase_cli.clients.transport import server_root
from rebase_cli.datasets import load_dataset
from rebase_cli.errors import ConfigError, EndpointError
from rebase_cli.prompts import PrmFormat, load_template
from rebase_cli.sim import FaultConfig, SimConfig, start_in_thread
from tests.http_fakes import Reply, ScriptedServer, completions_handler, models_handler

FAST = RetryPolicy(
    max_attempts=3,
    timeout=2.0,
    max_total_wait=10.0,
    backoff_initial=0.001,
    backoff_max=0.01,
    jitter=0.001,
)
STOP = ["\n", "</s>"]


@pytest.fixture
def server():
    fake = ScriptedServer().start()
    fake.route("/v1/models", models_handler("served-model"))
    fake.route("/v1/completions", completions_handler())
    yield fake
    fake.stop()


def expand(server, n=3, seed=10, **client_args):
    """Run one expand (and return the batch and the client's capabilities)."""

    async def go():
        client = PolicyClient(server.url, retry=client_args.pop("retry", FAST), **client_args)
        try:
            batch = await client.expand(
                "Q: 1+1?\n", n, stop=STOP, max_new_tokens=64, temperature=0.7, top_p=0.9, seed=seed
            )
            return batch, client.capabilities
        finally:
            await client.aclose()

    return asyncio.run(go())


# --- policy: the happy path -----------------------------------------------------------------------


def test_expand_sends_one_request_with_n_and_reads_every_choice(server):
    server.route("/v1/completions", completions_handler(shuffle=True))
    batch, caps = expand(server, n=3, seed=10, api_key="sk-test-key")

    assert [c.text for c in batch.completions] == ["step 10", "step 11", "step 12"]
    assert {c.finish_reason for c in batch.completions} == {"stop"}
    assert {c.matched_stop for c in batch.completions} == {"\n"}
    assert (batch.prompt_tokens, batch.completion_tokens) == (7, 9)
    assert sum(c.completion_tokens for c in batch.completions) == 9
    assert (batch.requests, batch.retries) == (1, 0)
    assert caps == {
        "queue_priority": None,
        "n_supported": True,
        "reports_matched_stop": True,
        "matched_stop_field": "matched_stop",
        "reports_usage": True,
        # The fake serves neither /server_info nor /version: a plain OpenAI-compatible server,
        # whose seed handling is unknown; without token ids, n > 1 counts are apportioned.
        "server": "openai",
        "server_version": None,
        "server_detected": True,
        "sampling_plan": "/v1/completions, n per request, seed + i per child",
        "reproducible": False,
        "reproducible_why": (
            "the server does not say whether it applies seeds (no /server_info or /version)"
        ),
        "token_counts": "approximate",
    }
    [request] = server.requests_to("/v1/completions")
    assert request.body == {
        "model": "served-model",  # resolved from GET /v1/models
        "prompt": "Q: 1+1?\n",
        "n": 3,
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop": STOP,
        "seed": 10,
    }
    assert request.header("Authorization") == "Bearer sk-test-key"


def test_a_given_model_name_skips_the_model_lookup(server):
    expand(server, model="my-model")
    assert server.requests_to("/v1/models") == []
    assert server.requests_to("/v1/completions")[0].body["model"] == "my-model"


def test_vllm_stop_reason_is_read_as_matched_stop(server):
    def vllm(request):
        return Reply.json(
            {
                "choices": [
                    {"index": 0, "text": "a", "finish_reason": "stop", "stop_reason": "\n"},
                    {"index": 1, "text": "b", "finish_reason": "stop", "stop_reason": None},
                    {"index": 2, "text": "c", "finish_reason": "stop", "stop_reason": 128001},
                    {"index": 3, "text": "dd", "finish_reason": "length", "stop_reason": None},
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 10},
            }
        )

    server.route("/v1/completions", vllm)
    batch, caps = expand(server, n=4)
    assert [c.matched_stop for c in batch.completions] == ["\n", None, 128001, None]
    assert [c.finish_reason for c in batch.completions] == ["stop", "stop", "stop", "length"]
    assert caps["matched_stop_field"] == "stop_reason"
    # usage is per request: split over choices by text length, summing to the reported total
    assert [c.completion_tokens for c in batch.completions] == [2, 2, 2, 4]


def test_text_past_a_stop_string_is_cut_there_and_counts_as_a_step_end(server):
    # `transformers serve` returns the stop string and the rest of its token in the text, and no
    # matched_stop: the step is what comes before the stop string.
    def transformers_like(request):
        return Reply.json(
            {
                "choices": [
                    {"index": 0, "text": "Step 1: 2 + 2 = 4.\n\n", "finish_reason": "stop"},
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 9},
            }
        )

    server.route("/v1/completions", transformers_like)
    batch, caps = expand(server, n=1)
    [completion] = batch.completions
    assert completion.text == "Step 1: 2 + 2 = 4."
    assert (completion.finish_reason, completion.matched_stop) == ("stop", "\n")
    assert caps["reports_matched_stop"] is False


def test_max_n_splits_a_large_n_into_requests_with_consecutive_seeds(server):
    batch, _ = expand(server, n=5, seed=100, max_n=2)
    bodies = [r.body for r in server.requests_to("/v1/completions")]
    assert sorted((b["seed"], b["n"]) for b in bodies) == [(100, 2), (102, 2), (104, 1)]
    assert [c.text for c in batch.completions] == [f"step {s}" for s in range(100, 105)]
    assert batch.requests == 3 and batch.prompt_tokens == 21


# --- policy: ordinary OpenAI-compatible servers ---------------------------------------------------


def test_a_server_that_ignores_n_gets_the_rest_as_separate_seeded_requests(server):
    server.route("/v1/completions", completions_handler(max_choices=1, stop_field=None))

    async def go():
        client = PolicyClient(server.url, retry=FAST)
        first = await client.expand("p", 4, stop=STOP, max_new_tokens=8, temperature=1.0, seed=10)
        caps = client.capabilities
        second = await client.expand("p", 3, stop=STOP, max_new_tokens=8, temperature=1.0, seed=50)
        await client.aclose()
        return first, caps, second

    first, caps, second = asyncio.run(go())
    assert [c.text for c in first.completions] == ["step 10", "step 11", "step 12", "step 13"]
    assert first.requests == 4
    assert caps["n_supported"] is False
    assert caps["reports_matched_stop"] is False
    assert all(c.matched_stop is None for c in first.completions)
    # learnt: the second expand asks one sample per request from the start
    bodies = [r.body for r in server.requests_to("/v1/completions")]
    assert sorted((b["n"], b["seed"]) for b in bodies[4:]) == [(1, 50), (1, 51), (1, 52)]
    assert [c.text for c in second.completions] == ["step 50", "step 51", "step 52"]


def test_a_server_without_usage_gets_token_estimates(server):
    server.route("/v1/completions", completions_handler(usage=False))
    batch, caps = expand(server, n=2)
    assert caps["reports_usage"] is False
    assert [c.completion_tokens for c in batch.completions] == [2, 2]  # "step 10": 7 chars / 4
    assert batch.prompt_tokens == 0


# --- policy: faults -------------------------------------------------------------------------------


def test_5xx_and_malformed_bodies_are_retried_and_counted(server):
    server.script(
        "/v1/completions",
        Reply(status=500, body="internal error"),
        Reply(status=200, body="{not json"),
    )
    batch, _ = expand(server, n=2)
    assert batch.retries == 2 and batch.requests == 1
    assert len(batch.completions) == 2
    assert len(server.requests_to("/v1/completions")) == 3


def test_server_errors_are_bounded_by_attempts_not_by_the_connection_wait(server):
    server.script("/v1/completions", Reply(status=502), Reply(status=503))
    policy = RetryPolicy(max_attempts=3, max_total_wait=0, backoff_initial=0.001, jitter=0)
    batch, _ = expand(server, retry=policy)
    assert batch.retries == 2


def test_a_body_without_choices_is_malformed_and_reported_after_the_last_attempt(server):
    server.route("/v1/completions", lambda request: Reply.json({"object": "error"}))
    with pytest.raises(EndpointError) as info:
        expand(server)
    message = info.value.one_line()
    assert f"policy server {server.url} sent malformed answers to /v1/completions" in message
    assert "3 attempts" in message and "no `choices` list" in message
    assert len(server.requests_to("/v1/completions")) == 3


def test_persistent_503_gives_up_with_the_status_and_body(server):
    server.route("/v1/completions", lambda request: Reply(status=503, body="overloaded"))
    with pytest.raises(EndpointError) as info:
        expand(server)
    message = info.value.one_line()
    assert "kept failing on /v1/completions: HTTP 503 (3 attempts" in message
    assert "overloaded" in message


def test_4xx_fails_at_once_with_the_endpoint_and_response_text(server):
    server.route(
        "/v1/completions",
        lambda request: Reply.json({"error": "max_tokens is too large"}, status=400),
    )
    with pytest.raises(EndpointError) as info:
        expand(server, api_key="sk-very-secret")
    message = info.value.one_line()
    assert f"policy server {server.url} refused /v1/completions: HTTP 400" in message
    assert "max_tokens is too large" in message
    assert "sk-very-secret" not in message
    assert len(server.requests_to("/v1/completions")) == 1  # no retry


def test_a_hanging_server_times_out_on_every_attempt(server):
    server.route("/v1/completions", lambda request: Reply(hang=True))
    policy = RetryPolicy(
        max_attempts=2, timeout=0.2, backoff_initial=0.001, backoff_max=0.01, jitter=0
    )
    with pytest.raises(EndpointError) as info:
        expand(server, retry=policy)
    assert "did not answer /v1/completions within 0.2 s (2 attempts" in info.value.one_line()
    assert len(server.requests_to("/v1/completions")) == 2


def test_a_hang_then_an_answer_succeeds_with_one_retry(server):
    server.script("/v1/completions", Reply(hang=True))
    batch, _ = expand(
        server, retry=RetryPolicy(max_attempts=3, timeout=0.2, jitter=0, backoff_initial=0.001)
    )
    assert batch.retries == 1 and len(batch.completions) == 3


def test_a_dead_server_is_retried_until_the_time_bound_then_reported_unreachable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # connection failures ignore the attempt bound: a restarting server gets the whole wait
    policy = RetryPolicy(
        max_attempts=2, timeout=1.0, max_total_wait=0.3, backoff_initial=0.02, jitter=0.001
    )

    async def go():
        client = PolicyClient(f"http://127.0.0.1:{port}/v1/", model="m", retry=policy)
        try:
            await client.expand("p", 1, stop=STOP, max_new_tokens=8, temperature=1.0)
        finally:
            await client.aclose()

    with pytest.raises(EndpointError) as info:
        asyncio.run(go())
    message = info.value.one_line()
    found = re.match(
        rf"policy server http://127\.0\.0\.1:{port} unreachable for ([0-9.]+) s \((\d+) attempts",
        message,
    )
    assert found and float(found[1]) >= 0.3 and int(found[2]) > 2
    assert "is the server running" in message


def test_requests_in_flight_are_capped_per_endpoint(server):
    server.route("/v1/completions", completions_handler(delay=0.2))

    async def go():
        client = PolicyClient(server.url, model="m", retry=FAST, max_in_flight=3)
        await asyncio.gather(
            *(
                client.expand(f"p{i}", 1, stop=STOP, max_new_tokens=8, temperature=1.0)
                for i in range(8)
            )
        )
        await client.aclose()

    asyncio.run(go())
    assert len(server.requests_to("/v1/completions")) == 8
    assert server.peak_in_flight == 3


def test_model_lookup_failures_are_endpoint_errors(server):
    server.route("/v1/models", lambda request: Reply.json({"data": []}))

    async def go():
        client = PolicyClient(server.url, retry=FAST)
        try:
            await client.model_id()
        finally:
            await client.aclose()

    with pytest.raises(EndpointError, match="no model id"):
        asyncio.run(go())


# --- reward adapters ------------------------------------------------------------------------------

PRM = PrmFormat(step_tag=" ки", good_token_id=648, bad_token_id=387, step_separator="\n")


def score(server, protocol, candidates, previous=("Step 1: a",), **client_args):
    async def go():
        client = make_reward_client(
            protocol,
            server.url,
            prm=client_args.pop("prm", PRM),
            retry=client_args.pop("retry", FAST),
            **client_args,
        )
        try:
            return await client.score("What is 2+2?", list(previous), list(candidates))
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_score_protocol_sends_one_shepherd_request_per_sibling_group(server):
    server.route(
        "/v1/score",
        lambda request: Reply.json(
            {"scores": [[0.9, 0.1], [0.25, 0.75]], "usage": {"prompt_tokens": 40}}
        ),
    )
    batch = score(server, "score", ["Step 2: b", "Step 2: c"], model="prm-7b")
    assert batch.scores == (0.9, 0.25)
    assert (batch.tokens, batch.requests, batch.retries) == (40, 1, 0)
    [request] = server.requests_to("/v1/score")
    assert request.body == {
        "query": "What is 2+2? Step 1: a ки\n",
        "items": ["Step 2: b ки", "Step 2: c ки"],
        "label_token_ids": [648, 387],
        "apply_softmax": True,
        "model": "prm-7b",
    }


def test_score_protocol_on_a_server_without_v1_score_says_which_protocol_to_pick(server):
    with pytest.raises(EndpointError) as info:
        score(server, "score", ["x"])
    message = info.value.one_line()
    assert f"reward server {server.url} does not serve /v1/score (HTTP 404)" in message
    assert "pick --reward-protocol classify|pooling" in message


def test_score_rows_that_do_not_match_the_candidates_are_malformed(server):
    server.route("/v1/score", lambda request: Reply.json({"scores": [[0.5, 0.5]]}))
    with pytest.raises(EndpointError, match="expected `scores` with 2 rows"):
        score(server, "score", ["x", "y"])
    assert len(server.requests_to("/v1/score")) == FAST.max_attempts


def test_scores_outside_zero_one_are_rejected_and_retried(server):
    server.script("/v1/score", Reply.json({"scores": [[1.7, -0.7]]}))
    server.route("/v1/score", lambda request: Reply.json({"scores": [[1.0000000001, 0.0]]}))
    batch = score(server, "score", ["x"])
    assert batch.scores == (1.0,) and batch.retries == 1


def test_a_non_finite_score_is_reported_as_such_not_as_a_body_that_is_not_json(server):
    # Python servers write NaN into JSON; the fast parser refuses it, the fallback reads it.
    server.route("/v1/score", lambda request: Reply(body='{"scores": [[NaN, 0.5]]}'))
    with pytest.raises(EndpointError, match=r"p\(good\) is not a finite number: nan"):
        score(server, "score", ["x"])


def test_a_model_request_to_a_port_that_speaks_another_protocol_says_so():
    """The model-request path (not the openai client) meets a non-HTTP reply."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()

    async def go():
        client = make_reward_client("score", f"http://127.0.0.1:{port}", model="m", retry=FAST)
        try:
            await client.score("q", [], ["x"])
        finally:
            await client.aclose()

    try:
        with pytest.raises(
            EndpointError, match=f"reward server http://127.0.0.1:{port} does not speak HTTP"
        ):
            asyncio.run(go())
    finally:
        listener.close()


def test_classify_protocol_squashes_raw_rewards_in_candidate_order(server):
    server.route(
        "/classify",
        lambda request: Reply.json(
            [
                {"index": 1, "embedding": [-2.0], "meta_info": {"prompt_tokens": 11}},
                {"index": 0, "embedding": [0.0], "meta_info": {"prompt_tokens": 12}},
            ]
        ),
    )
    batch = score(server, "classify", ["Step 2: b", "Step 2: c"])
    assert batch.scores == pytest.approx((0.5, 1 / (1 + math.exp(2))))
    assert (batch.tokens, batch.requests) == (23, 1)
    [request] = server.requests_to("/classify")
    assert request.body == {
        "text": ["What is 2+2? Step 1: a\nStep 2: b", "What is 2+2? Step 1: a\nStep 2: c"]
    }


def test_pooling_protocol_scores_a_sibling_group_in_one_request(server):
    def pooling(request):
        data = []
        # vLLM answers a list input with one result per input; reversed to check the order.
        for index, text in reversed(list(enumerate(request.body["input"]))):
            steps = text.count("<extra_0>")
            last = [0.7, 0.3] if "bad" in text else [0.1, 0.9]
            data.append({"index": index, "data": [[0.2, 0.8]] * (steps - 1) + [last]})
        return Reply.json({"data": data, "usage": {"prompt_tokens": 60}})

    server.route("/pooling", pooling)
    prm = PrmFormat(pooling_step_tag="<extra_0>", system="Reason step by step.")
    batch = score(server, "pooling", ["good step", "bad step"], previous=["s1", "s2"], prm=prm)
    assert batch.scores == (0.9, 0.3)
    assert (batch.tokens, batch.requests, batch.retries) == (60, 1, 0)
    [request] = server.requests_to("/pooling")
    assert request.body["task"] == "token_classify"
    assert request.body["input"][1] == (
        "<|im_start|>system\nReason step by step.<|im_end|>\n"
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\ns1<extra_0>s2<extra_0>bad step<extra_0><|im_end|>\n"
    )


def test_classify_renders_the_templates_chat_format_when_it_has_one(server):
    server.route(
        "/classify",
        lambda request: Reply.json([{"embedding": [0.0]} for _ in request.body["text"]]),
    )
    chat = "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n{answer}<|im_end|>\n"
    score(
        server, "classify", ["x = \\frac{1}{2}"], previous=["s1"], prm=PrmFormat(classify_chat=chat)
    )
    score(server, "classify", ["x = 1"], previous=["s1"], prm=PrmFormat())
    chatted, plain = (r.body["text"][0] for r in server.requests_to("/classify"))
    assert chatted == (
        "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\ns1\nx = \\frac{1}{2}<|im_end|>\n"
    )
    assert plain == "What is 2+2? s1\nx = 1"
    assert load_template("qwen-math").prm.classify_chat is not None


def test_empty_sibling_groups_cost_no_request(server):
    for protocol in ("score", "classify", "pooling"):
        batch = score(server, protocol, [])
        assert batch.scores == () and batch.requests == 0
    assert server.requests == []


def test_reward_model_id_is_optional(server):
    async def go(route_models: bool):
        if not route_models:
            server.routes.pop("/v1/models")
        client = make_reward_client("score", server.url, retry=FAST)
        try:
            return await client.model_id()
        finally:
            await client.aclose()

    assert asyncio.run(go(True)) == "served-model"
    assert asyncio.run(go(False)) is None


def test_unknown_reward_protocol_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown reward protocol 'logits'"):
        make_reward_client("logits", "http://127.0.0.1:1")


# --- small pure helpers ---------------------------------------------------------------------------


def test_server_root_accepts_the_root_or_the_v1_url():
    assert server_root("http://h:30000") == "http://h:30000"
    assert server_root(" http://h:30000/v1/ ") == "http://h:30000"
    assert server_root("https://h/proxy/v1") == "https://h/proxy"
    with pytest.raises(EndpointError, match="not an http"):
        server_root("h:30000")


def test_apportion_keeps_the_total():
    assert apportion(10, [1, 1, 2]) == [3, 2, 5]
    assert apportion(5, [0, 0]) == [3, 2]
    assert apportion(0, [4, 5]) == [0, 0]
    assert sum(apportion(97, [3, 0, 11, 7])) == 97
    assert json.dumps(apportion(3, [])) == "[]"


# --- against the simulator (real SGLang-shaped server) ------------------------------------------


@pytest.fixture
def sim_problem():
    return load_dataset("gsm8k").problems[3], load_template("llemma-metamath")


def run_against_sim(config_changes, coro_factory):
    # vLLM, the flavour whose one n-request gives distinct, reproducible children.
    config = SimConfig(role="both", flavour="vllm", port=0, datasets=("gsm8k",))
    config = config.with_(**config_changes)
    with start_in_thread(config) as sim:
        return asyncio.run(coro_factory(sim.url))


def test_policy_and_every_reward_protocol_work_against_the_simulator(sim_problem):
    problem, template = sim_problem

    async def go(url):
        policy = PolicyClient(url, retry=FAST)
        batch = await policy.expand(
            template.render(problem.question),
            4,
            stop=list(template.stop),
            max_new_tokens=256,
            temperature=1.0,
            seed=1,
        )
        scores = {}
        for protocol in ("score", "classify", "pooling"):
            reward = make_reward_client(protocol, url, prm=template.prm, retry=FAST)
            steps = [c.text for c in batch.completions]
            scores[protocol] = await reward.score(problem.question, [], steps)
            await reward.aclose()
        caps = policy.capabilities
        await policy.aclose()
        return batch, scores, caps

    batch, scores, caps = run_against_sim({}, go)
    assert len(batch.completions) == 4 and batch.requests == 1
    assert all(c.text.startswith("Step 1: ") for c in batch.completions)
    assert all(c.matched_stop == "\n" for c in batch.completions if c.finish_reason == "stop")
    assert batch.completion_tokens == sum(c.completion_tokens for c in batch.completions) > 0
    assert caps["n_supported"] is True and caps["matched_stop_field"] == "stop_reason"
    assert caps["server"] == "vllm" and caps["reproducible"] is True
    assert caps["token_counts"] == "exact"
    for protocol, scored in scores.items():
        assert len(scored.scores) == 4, protocol
        assert all(0.0 <= s <= 1.0 for s in scored.scores), protocol
    assert scores["pooling"].requests == 1 and scores["score"].requests == 1


def test_simulated_faults_are_retried_and_counted(sim_problem):
    problem, template = sim_problem
    faults = {"http_500": 0.2, "http_503": 0.2, "malformed": 0.2, "seed": 5}

    patient = RetryPolicy(
        max_attempts=30, timeout=5, backoff_initial=0.001, backoff_max=0.002, jitter=0.001
    )

    async def go(url):
        policy = PolicyClient(url, retry=patient)
        reward = make_reward_client("score", url, prm=template.prm, retry=patient)
        prompt = template.render(problem.question)
        retries = 0
        for seed in range(10):
            batch = await policy.expand(
                prompt, 2, stop=list(template.stop), max_new_tokens=256, temperature=1.0, seed=seed
            )
            scored = await reward.score(problem.question, [], [c.text for c in batch.completions])
            assert len(batch.completions) == 2 and len(scored.scores) == 2
            retries += batch.retries + scored.retries
        await policy.aclose()
        await reward.aclose()
        return retries

    retries = run_against_sim({"faults": FaultConfig(**faults)}, go)
    assert retries > 0  # with 60% of model requests failing, 20 calls cannot all pass at once


def test_every_reward_protocol_has_an_adapter_that_speaks_it() -> None:
    from rebase_cli.params import RewardProtocol

    for protocol in RewardProtocol:
        assert make_reward_client(protocol, "http://127.0.0.1:9").protocol == protocol
    with pytest.raises(ConfigError) as caught:
        make_reward_client("logits", "http://127.0.0.1:9")
    assert "use one of score, classify, pooling" in caught.value.one_line()


def test_backoff_doubles_up_to_its_cap_plus_bounded_jitter():
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=3.0, jitter=0.25)
    for retry, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        waits = [backoff(policy, retry) for _ in range(200)]
        assert all(base <= wait <= base + 0.25 for wait in waits)
        assert max(waits) - min(waits) > 0.05  # jittered, so callers do not retry in lockstep


def test_connection_failures_stop_on_the_time_bound_and_other_failures_on_attempts():
    policy = RetryPolicy(max_attempts=3, max_total_wait=10.0)
    refused = openai.APIConnectionError(request=None)  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError()
    broken = MalformedResponse("no `choices` list", "{}")
    assert not out_of_tries(policy, refused, attempts=50, elapsed=9.9)
    assert out_of_tries(policy, refused, attempts=2, elapsed=10.0)
    assert not out_of_tries(policy, broken, attempts=2, elapsed=100.0)
    assert out_of_tries(policy, broken, attempts=3, elapsed=0.0)


def test_a_levels_sibling_groups_are_scored_in_one_request_as_each_alone_would_be(sim_problem):
    """Every protocol: `score_level` over three groups (different paths) costs one request and
    gives each candidate the score its own group's request gives it."""
    problem, template = sim_problem
    groups = [
        ([], ["Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "Step 1: 16 - 3 = 11."]),
        (["Step 1: Janet eats 3."], ["Step 2: She bakes with 4, so 9 remain."]),
        (["Step 1: Janet eats 3.", "Step 2: 9 remain."], ["Step 3: 9 * 2 = 18.", "Step 3: 20."]),
    ]

    async def go(url):
        results = {}
        for protocol in ("score", "classify", "pooling"):
            reward = make_reward_client(protocol, url, prm=template.prm, retry=FAST)
            try:
                alone = [await reward.score(problem.question, p, c) for p, c in groups]
                before = sum(sim_requests(url).values())
                level = await reward.score_level(problem.question, groups)
                sent = sum(sim_requests(url).values()) - before
            finally:
                await reward.aclose()
            results[protocol] = alone, level, sent
        return results

    for protocol, (alone, level, sent) in run_against_sim({}, go).items():
        assert level.scores == tuple(s for batch in alone for s in batch.scores), protocol
        assert (level.requests, sent) == (1, 1), protocol
        assert level.tokens == sum(batch.tokens for batch in alone), protocol


def sim_requests(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/sim/stats").json()["requests"]


def test_score_protocol_sends_a_level_as_its_common_query_and_the_rest_as_items(server):
    server.route(
        "/v1/score",
        lambda request: Reply.json({"scores": [[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]]}),
    )

    async def go():
        client = make_reward_client("score", server.url, prm=PRM, retry=FAST)
        try:
            groups = [(["Step 1: a"], ["Step 2: b", "Step 2: c"]), (["Step 1: ab"], ["Step 2: d"])]
            return await client.score_level("What is 2+2?", groups)
        finally:
            await client.aclose()

    assert asyncio.run(go()).scores == (0.9, 0.25, 0.5)
    [request] = server.requests_to("/v1/score")
    assert request.body["query"] == "What is 2+2? Step 1: a"
    assert request.body["items"] == [" ки\nStep 2: b ки", " ки\nStep 2: c ки", "b ки\nStep 2: d ки"]
