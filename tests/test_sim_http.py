"""The simulator as a real server process, driven by the official openai client: the wire
shapes of DESIGN §5, stop semantics, determinism, and 400s for bodies a real server refuses.

The server runs the vLLM flavour, the one whose `n` samples are distinct and reproducible; the
other flavours' differences are tested in test_sim_flavours.py."""

from __future__ import annotations

import os

import httpx
import openai
import pytest

from rebase_cli.datasets import load_dataset
from rebase_cli.prompts import load_template
from rebase_cli.sim.spawn import spawn
from rebase_cli.sim.tokenizer import count_tokens
from tests.conftest import SHARED_DATA

TEMPLATE = load_template("llemma-metamath")
GOOD, BAD = TEMPLATE.prm.good_token_id, TEMPLATE.prm.bad_token_id
DATA_ENV = {"REBASE_DATA_DIR": os.environ.get("REBASE_DATA_DIR") or str(SHARED_DATA)}


@pytest.fixture(scope="module")
def server():
    args = [
        "--flavour",
        "vllm",
        "--role",
        "both",
        "--port",
        "0",
        "--dataset",
        "gsm8k",
        "--prm-noise",
        "0.3",
        "--prm-signal",
        "2",
    ]
    with spawn(args, env=DATA_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def root_client(server) -> openai.OpenAI:
    """For the routes SGLang serves outside /v1 (/classify, /pooling)."""
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def problems():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REBASE_DATA_DIR", DATA_ENV["REBASE_DATA_DIR"])
        return load_dataset("gsm8k").problems


def step_request(client: openai.OpenAI, prompt, **kwargs):
    params = {"max_tokens": 256, "stop": list(TEMPLATE.stop), "temperature": 1.0, "seed": 7}
    return client.completions.create(model="sim-policy", prompt=prompt, **{**params, **kwargs})


def stop_reason(choice):
    """vLLM's stop field: the stop string, or None at EOS and at the length limit."""
    return choice.model_extra["stop_reason"]


def test_health_models_and_model_info_mark_the_server_as_simulated(server, client):
    assert httpx.get(server.url + "/health").status_code == 200
    ids = [model.id for model in client.models.list()]
    assert ids == ["sim-policy", "sim-prm"]
    info = httpx.get(server.url + "/model_info").json()
    assert info["simulated"] is True and info["label_token_ids"] == [GOOD, BAD]


def test_completion_shape_usage_and_prompt_major_order(client, problems):
    prompts = [TEMPLATE.render(problems[0].question), TEMPLATE.render(problems[1].question)]
    response = step_request(client, prompts, n=3)
    assert response.model == "sim-policy" and response.object == "text_completion"
    assert [c.index for c in response.choices] == list(range(6))
    assert all("duck eggs" in c.text for c in response.choices[:3])  # Janet's problem first
    assert all("fiber" in c.text for c in response.choices[3:])
    for choice in response.choices:
        assert choice.text.startswith("Step 1: ") and "\n" not in choice.text
        assert choice.finish_reason == "stop" and stop_reason(choice) == "\n"
    usage = response.usage
    assert usage.prompt_tokens == sum(count_tokens(p) for p in prompts)
    assert usage.completion_tokens == sum(count_tokens(c.text) + 1 for c in response.choices)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_n_samples_differ_and_a_seed_reproduces_them(client, problems):
    prompt = TEMPLATE.render(problems[5].question)
    first = [c.text for c in step_request(client, prompt, n=8, seed=11).choices]
    again = [c.text for c in step_request(client, prompt, n=8, seed=11).choices]
    assert first == again
    assert len(set(first)) > 1


def test_a_path_walked_step_by_step_ends_with_the_eos_token(client, problems):
    prompt = TEMPLATE.render(problems[3].question)
    for _ in range(30):
        choice = step_request(client, prompt).choices[0]
        if stop_reason(choice) != "\n":
            break
        prompt = TEMPLATE.extend(prompt, choice.text)
    assert stop_reason(choice) is None and choice.finish_reason == "stop"
    assert choice.text.startswith("The answer is: ")


def test_without_the_delimiter_stop_the_whole_solution_comes_back(client, problems):
    prompt = TEMPLATE.render(problems[3].question)
    choice = step_request(client, prompt, stop=None, max_tokens=1024).choices[0]
    assert choice.text.count("\n") >= 2 and stop_reason(choice) is None
    assert choice.finish_reason == "stop"
    short = step_request(client, prompt, max_tokens=3).choices[0]
    assert short.finish_reason == "length" and stop_reason(short) is None


def test_score_returns_label_probabilities_for_each_item(client, problems):
    question = problems[0].question
    query = question + "\n"
    right = "Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day." + TEMPLATE.prm.step_tag
    wrong = "Step 1: Janet sells 16 - 3 - 4 = 11 duck eggs a day." + TEMPLATE.prm.step_tag
    body = {"query": query, "items": [right, wrong], "label_token_ids": [GOOD, BAD]}
    scores = client.post("/score", body={**body, "apply_softmax": True}, cast_to=object)
    (good_right, bad_right), (good_wrong, _) = scores["scores"]
    assert good_right + bad_right == pytest.approx(1.0)
    assert good_right > 0.7 > 0.3 > good_wrong
    flipped = client.post(
        "/score",
        body={**body, "label_token_ids": [BAD, GOOD], "apply_softmax": True},
        cast_to=object,
    )
    assert flipped["scores"][0] == pytest.approx([bad_right, good_right])
    raw = client.post("/score", body=body, cast_to=httpx.Response).json()
    assert sum(raw["scores"][0]) < 1.0 and raw["model"] == "sim-prm"


def test_score_reads_query_plus_item_as_one_text_and_counts_each_prompt(client, problems):
    """As SGLang 0.5.23 `score_request`: each item is scored on query + item (joined as text),
    an omitted query is "", and the usage sums every prompt's tokens."""
    query = problems[0].question + "\n"
    steps = ["Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day.", "Step 1: 16 - 3 = 11."]
    items = [step + TEMPLATE.prm.step_tag for step in steps]
    labels = {"label_token_ids": [GOOD, BAD], "apply_softmax": True}
    split = client.post("/score", body={"query": query, "items": items, **labels}, cast_to=object)
    whole = [query + item for item in items]
    joined = client.post("/score", body={"items": whole, **labels}, cast_to=object)
    elsewhere = [whole[0][:7], whole[0][7:]]  # the query may end anywhere in the text
    cut = client.post(
        "/score", body={"query": elsewhere[0], "items": [elsewhere[1]], **labels}, cast_to=object
    )
    assert joined["scores"] == split["scores"] and cut["scores"] == split["scores"][:1]
    tokens = sum(count_tokens(text) for text in whole)
    assert split["usage"]["prompt_tokens"] == joined["usage"]["prompt_tokens"] == tokens


def test_classify_returns_a_raw_reward_per_text(root_client, problems):
    question = problems[0].question
    right = question + "\nStep 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day."
    wrong = question + "\nStep 1: Janet sells 16 - 3 - 4 = 11 duck eggs a day."
    batch = root_client.post("/classify", body={"text": [right, wrong]}, cast_to=object)
    assert [len(item["embedding"]) for item in batch] == [1, 1]
    assert batch[0]["embedding"][0] > 0 > batch[1]["embedding"][0]
    assert batch[0]["meta_info"]["prompt_tokens"] == count_tokens(right)
    single = root_client.post("/classify", body={"text": right}, cast_to=object)
    assert single["embedding"] == batch[0]["embedding"]  # one text, one object (as SGLang)


def test_pooling_returns_one_row_per_tagged_step(root_client, problems):
    question = problems[0].question
    text = (
        f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.<extra_0>"
        "She makes 9 * 2 = $19 every day.<extra_0><|im_end|>"
    )
    response = root_client.post(
        "/pooling", body={"input": text, "task": "token_classify"}, cast_to=object
    )
    rows = response["data"][0]["data"]
    assert response["model"] == "sim-prm" and len(rows) == 2
    assert all(sum(row) == pytest.approx(1.0) for row in rows)
    assert rows[0][1] > 0.5 > rows[1][1]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/completions", {"model": "m"}, "`prompt` is required"),
        ("/v1/completions", {"prompt": "x", "n": 0}, "`n` must be >= 1"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens must be positive"),
        ("/v1/completions", {"prompt": "x", "temperature": -1}, "temperature"),
        ("/v1/completions", {"prompt": "x", "stop": 5}, "`stop`"),
        ("/v1/completions", {"prompt": [1, 2, 3]}, "token-id"),
        ("/v1/completions", {"prompt": "x", "stream": True}, "streaming"),
        ("/v1/score", {"query": "q", "items": ["a"]}, "label_token_ids"),
        ("/v1/score", {"query": "q", "label_token_ids": [1]}, "`items` is required"),
        ("/classify", {}, "`text` is required"),
        ("/pooling", {"input": "x", "task": "embed"}, "task"),
    ],
)
def test_bad_bodies_get_http_400_with_a_message(server, path, body, message):
    response = httpx.post(server.url + path, json=body)
    assert response.status_code == 400
    assert message in response.text


def test_openai_client_sees_bad_requests_as_bad_request_errors(client):
    with pytest.raises(openai.BadRequestError, match="top_p"):
        client.completions.create(model="sim-policy", prompt="x", top_p=1.5)
    response = httpx.post(
        str(client.base_url) + "completions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400 and "not valid JSON" in response.text


def test_stats_count_requests_and_tokens(server, client):
    before = httpx.get(server.url + "/sim/stats").json()
    step_request(client, "What is 2 + 3?")
    after = httpx.get(server.url + "/sim/stats").json()
    assert after["requests"]["/v1/completions"] == before["requests"]["/v1/completions"] + 1
    assert after["completion_tokens"] > before["completion_tokens"]
    assert after["simulated"] is True and after["bad_requests"] >= 0


def test_a_policy_server_refuses_reward_routes(problems):
    with spawn(["--role", "policy", "--port", "0"], env=DATA_ENV) as policy:
        response = httpx.post(policy.url + "/v1/score", json={"query": "q"})
        assert response.status_code == 404 and "--role reward" in response.text
        models = httpx.get(policy.url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["sim-policy"]
