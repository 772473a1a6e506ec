"""The simulator's flavours over real HTTP: each behaves like the server it stands for (sglang
0.5.23, vllm 0.33.0, a plain OpenAI-compatible server), as read in those servers' source.

Each test names the flavour whose behaviour it checks."""

from __future__ import annotations

import time

import httpx
import pytest

from rebase_cli.datasets import load_dataset
from rebase_cli.prompts import load_template
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.inprocess import start_in_thread

TEMPLATE = load_template("llemma-metamath")
STOP = list(TEMPLATE.stop)


@pytest.fixture(scope="module")
def problems():
    return load_dataset("gsm8k").problems[:20]


@pytest.fixture(scope="module")
def servers(problems):
    """One simulator per flavour (policy and reward on one port)."""
    running = {
        flavour: start_in_thread(
            SimConfig(role="both", flavour=flavour, port=0, datasets=("gsm8k",)),
            problems=problems,
        )
        for flavour in ("sglang", "sglang-deterministic", "vllm", "openai")
    }
    yield running
    for server in running.values():
        server.stop()


def complete(server, prompt: str, **body) -> dict:
    payload = {"model": "sim-policy", "prompt": prompt, "max_tokens": 256, "stop": STOP}
    payload.update(temperature=1.0, **body)
    response = httpx.post(server.url + "/v1/completions", json=payload, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def texts(reply: dict) -> list[str]:
    return [c["text"] for c in reply["choices"]]


def walk_to_the_end(server, prompt: str, field: str) -> dict:
    """Generate one step per request until a choice does not stop at the delimiter."""
    for _ in range(40):
        [choice] = complete(server, prompt, seed=3)["choices"]
        if choice.get(field) != "\n":
            return choice
        prompt = TEMPLATE.extend(prompt, choice["text"])
    raise AssertionError("the path never ended")


# --- SGLang, default ---------------------------------------------------------------------------


def test_sglang_ignores_the_seed_so_samples_differ_from_call_to_call(servers, problems):
    server = servers["sglang"]
    prompt = TEMPLATE.render(problems[3].question)
    first = texts(complete(server, prompt, n=8, seed=11, stop=[]))
    again = texts(complete(server, prompt, n=8, seed=11, stop=[]))
    assert first != again  # same request, same seed, other samples
    assert len(set(first)) > 1
    assert server.sim.duplicate_samples == 0


def test_sglang_reports_eos_as_the_eos_token_id_in_matched_stop(servers, problems):
    choice = walk_to_the_end(
        servers["sglang"], TEMPLATE.render(problems[0].question), "matched_stop"
    )
    assert choice["finish_reason"] == "stop" and choice["matched_stop"] == 2
    assert "stop_reason" not in choice


def test_sglang_info_routes_ready_is_instant_and_health_takes_a_second(servers):
    url = servers["sglang"].url
    info = httpx.get(url + "/server_info").json()
    assert info["enable_deterministic_inference"] is False and info["version"] == "0.5.23"
    started = time.monotonic()
    assert httpx.get(url + "/ready").status_code == 200
    ready_seconds = time.monotonic() - started
    started = time.monotonic()
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    assert time.monotonic() - started >= 1.0 > ready_seconds
    assert httpx.get(url + "/version").status_code == 404  # a vLLM route


# --- SGLang with --enable-deterministic-inference ---------------------------------------------


def test_deterministic_sglang_gives_the_n_choices_of_a_request_one_seed(servers, problems):
    server = servers["sglang-deterministic"]
    server.sim.reset()
    prompt = TEMPLATE.render(problems[4].question)
    reply = complete(server, prompt, n=4, seed=5, stop=[])
    assert len(set(texts(reply))) == 1  # four identical children: the tree would collapse
    assert server.sim.duplicate_samples == 3  # the simulator counts the collapse
    assert texts(complete(server, prompt, n=4, seed=5, stop=[])) == texts(reply)
    info = httpx.get(server.url + "/server_info").json()
    assert info["enable_deterministic_inference"] is True


def test_native_generate_batch_takes_one_sampling_seed_per_input(servers, problems):
    server = servers["sglang-deterministic"]
    server.sim.reset()
    prompt = TEMPLATE.render(problems[5].question)
    params = [
        {"max_new_tokens": 256, "temperature": 1.0, "stop": [], "sampling_seed": 100 + i}
        for i in range(6)
    ]
    body = {"text": [prompt] * 6, "sampling_params": params}
    first = httpx.post(server.url + "/generate", json=body, timeout=30).json()
    again = httpx.post(server.url + "/generate", json=body, timeout=30).json()
    assert [o["text"] for o in first] == [o["text"] for o in again]  # reproducible
    assert len({o["text"] for o in first}) > 1
    for output in first:
        meta = output["meta_info"]
        assert meta["finish_reason"] == {"type": "stop", "matched": 2}  # EOS token id
        assert meta["completion_tokens"] == len(output["output_ids"])
    assert server.sim.duplicate_samples == 6  # only the repeated request
    mismatch = {"text": [prompt] * 2, "sampling_params": params[:3]}
    refused = httpx.post(server.url + "/generate", json=mismatch, timeout=30)
    assert refused.status_code == 400 and "one per text" in refused.json()["message"]


# --- vLLM --------------------------------------------------------------------------------------


def test_vllm_gives_choice_i_seed_plus_i(servers, problems):
    server = servers["vllm"]
    prompt = TEMPLATE.render(problems[6].question)
    four = texts(complete(server, prompt, n=4, seed=20, stop=[]))
    assert texts(complete(server, prompt, n=4, seed=20, stop=[])) == four
    assert [texts(complete(server, prompt, seed=20 + i, stop=[]))[0] for i in range(4)] == four
    assert len(set(four)) > 1


def test_vllm_reports_eos_as_a_null_stop_reason(servers, problems):
    choice = walk_to_the_end(servers["vllm"], TEMPLATE.render(problems[0].question), "stop_reason")
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    assert "matched_stop" not in choice
    assert choice["text"].startswith("The answer is: ")


def test_vllm_info_routes(servers):
    url = servers["vllm"].url
    assert httpx.get(url + "/version").json() == {"version": "0.33.0"}
    assert httpx.get(url + "/server_info").status_code == 404
    assert httpx.get(url + "/ready").status_code == 404
    assert httpx.post(url + "/generate", json={"text": "x"}).status_code == 404


def test_pooling_takes_a_list_and_refuses_the_reward_task(servers):
    url = servers["vllm"].url
    body = {"model": "sim-prm", "input": ["a<extra_0>", "b<extra_0>c<extra_0>"]}
    pooled = httpx.post(url + "/pooling", json={**body, "task": "token_classify"}).json()
    assert [item["index"] for item in pooled["data"]] == [0, 1]
    refused = httpx.post(url + "/pooling", json={**body, "task": "reward"})
    assert refused.status_code == 400 and "token_classify" in refused.text


# --- every flavour that returns token ids ------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sglang", "sglang-deterministic", "vllm"])
def test_token_ids_come_back_when_asked_and_match_the_usage(servers, problems, flavour):
    server = servers[flavour]
    prompt = TEMPLATE.render(problems[7].question)
    reply = complete(server, prompt, n=3, seed=1, return_token_ids=True)
    lengths = [len(c["token_ids"]) for c in reply["choices"]]
    assert sum(lengths) == reply["usage"]["completion_tokens"] and min(lengths) > 0
    assert "token_ids" not in complete(server, prompt, n=1, seed=1)["choices"][0]


# --- a plain OpenAI-compatible server (transformers serve) -----------------------------------


def test_plain_server_ignores_n_reports_no_stop_and_leaves_the_stop_string(servers, problems):
    server = servers["openai"]
    reply = complete(server, TEMPLATE.render(problems[1].question), n=4, seed=2)
    [choice] = reply["choices"]
    assert "matched_stop" not in choice and "stop_reason" not in choice
    assert choice["text"].endswith("\n") and choice["text"].startswith("Step 1: ")
    for route in ("/server_info", "/version", "/ready"):
        assert httpx.get(server.url + route).status_code == 404
