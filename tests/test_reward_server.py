"""Our transformers reward server over tiny random models built here (seconds, no download):
the HTTP contract of /v1/score, /classify and /tokenize, checked against the same models run
directly with transformers, and its refusals of bad requests.

The tokenizer is a word-level one, so query + item tokenises as query and item apart; the
boundary case that needs a real BPE tokenizer is in test_real_reward_slow.py.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest


def _extra(name: str) -> ModuleType:
    """A module of the transformers extra: skipped without it in a bare development
    environment, a failure under CI or REBASE_REQUIRE_REAL_MODEL (scripts/test sets it)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        message = f"the transformers extra is missing ({name})"
        if os.environ.get("CI") or os.environ.get("REBASE_REQUIRE_REAL_MODEL"):
            pytest.fail(message + ": install with pip install -e '.[dev,transformers]'")
        pytest.skip(message, allow_module_level=True)
        raise


torch = _extra("torch")
transformers = _extra("transformers")

from rebase_cli.serving.health import wait_until_healthy  # noqa: E402
from rebase_cli.serving.net import base_url, free_port  # noqa: E402
from rebase_cli.serving.process import start, stop_group  # noqa: E402
from rebase_cli.serving.reward_model import (  # noqa: E402
    RewardModel,
    label_scores,
    shared_prefix_length,
)

WORDS = [
    "the",
    "a",
    "step",
    "is",
    "correct",
    "wrong",
    "yes",
    "no",
    "answer",
    "1",
    "2",
    "3",
    "4",
    "5",
    "+",
    "-",
    "=",
    "plus",
    "makes",
    "so",
    "then",
    "it",
]
VOCAB = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
LABELS = [VOCAB["yes"], VOCAB["no"]]
QUERY = "the step is 1 + 2 = 3 so then the answer is 3 then the step is 2 + 2 = 4 so "
ITEMS = ["it is correct", "it is wrong", "yes"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    raw = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]"
    )


def _config(**extra):
    return transformers.LlamaConfig(
        vocab_size=len(VOCAB), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A causal LM and a one-label sequence-classification head, random but fixed."""
    root = tmp_path_factory.mktemp("tiny-models")
    torch.manual_seed(0)
    paths = {"lm": root / "lm", "cls": root / "cls"}
    transformers.LlamaForCausalLM(_config()).save_pretrained(paths["lm"])
    head = transformers.LlamaForSequenceClassification(_config(num_labels=1, pad_token_id=0))
    head.save_pretrained(paths["cls"])
    for path in paths.values():
        _tokenizer().save_pretrained(path)
    return paths


@pytest.fixture(scope="module")
def lm_server(tiny_models: dict[str, Path], tmp_path_factory) -> Iterator[str]:
    yield from _serve(tiny_models["lm"], tmp_path_factory)


@pytest.fixture(scope="module")
def cls_server(tiny_models: dict[str, Path], tmp_path_factory) -> Iterator[str]:
    yield from _serve(tiny_models["cls"], tmp_path_factory)


def _serve(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from rebase_cli.serving.transformers_engine import build_reward_command, transformers_env

    port = free_port("127.0.0.1")
    argv = build_reward_command(str(model), "127.0.0.1", port, "cpu")
    log = tmp_path_factory.mktemp("reward-log") / "reward.log"
    server = start(argv, log, env=transformers_env(1))
    url = base_url("127.0.0.1", port)
    try:
        wait_until_healthy(url, timeout=120, exit_code=server.exit_code, what="reward server")
        yield url
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        stop_group(server.pid, grace=10, popen=server.popen)


def _next_token_logits(model_dir: Path, text: str):
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        return model(ids).logits[0, -1].float()


def test_score_rows_are_the_models_next_token_probabilities(lm_server, tiny_models) -> None:
    body = {"query": QUERY, "items": ITEMS, "label_token_ids": LABELS, "model": "m"}
    softmaxed = httpx.post(f"{lm_server}/v1/score", json={**body, "apply_softmax": True}).json()
    raw = httpx.post(f"{lm_server}/v1/score", json=body).json()
    flipped = httpx.post(
        f"{lm_server}/v1/score", json={**body, "item_first": True, "apply_softmax": True}
    ).json()

    assert softmaxed["object"] == "scoring" and softmaxed["model"] == "m"
    assert softmaxed["usage"]["prompt_tokens"] == sum(len((QUERY + i).split()) for i in ITEMS)
    for item, row, raw_row, flipped_row in zip(
        ITEMS, softmaxed["scores"], raw["scores"], flipped["scores"], strict=True
    ):
        logits = _next_token_logits(tiny_models["lm"], QUERY + item)
        assert row == pytest.approx(torch.softmax(logits[LABELS], -1).tolist(), abs=1e-5)
        assert raw_row == pytest.approx(torch.softmax(logits, -1)[LABELS].tolist(), abs=1e-6)
        logits = _next_token_logits(tiny_models["lm"], item + QUERY)
        assert flipped_row == pytest.approx(torch.softmax(logits[LABELS], -1).tolist(), abs=1e-5)


def test_token_id_input_and_per_item_labels(lm_server, tiny_models) -> None:
    ids = _tokenizer()
    query = ids.encode(QUERY)
    items = [ids.encode(i) for i in ITEMS[:2]]
    per_item = [LABELS, [VOCAB["correct"], VOCAB["wrong"], VOCAB["answer"]]]
    reply = httpx.post(
        f"{lm_server}/v1/score",
        json={"query": query, "items": items, "label_token_ids": per_item, "apply_softmax": True},
    ).json()
    assert [len(row) for row in reply["scores"]] == [2, 3]
    logits = _next_token_logits(tiny_models["lm"], QUERY + ITEMS[1])
    assert reply["scores"][1] == pytest.approx(
        torch.softmax(logits[per_item[1]], -1).tolist(), abs=1e-5
    )


def test_the_shared_prefix_path_gives_the_full_pass_results(tiny_models) -> None:
    """Siblings share the query's tokens: run once and reused, the scores do not change."""
    model = RewardModel.load(str(tiny_models["lm"]))
    sequences = [model.encode(QUERY + item) for item in ITEMS]
    assert shared_prefix_length(sequences) >= 16  # the reuse path is the one taken
    reused = model.score(QUERY, ITEMS, LABELS, apply_softmax=True).scores
    alone = [model.score(QUERY, [item], LABELS, apply_softmax=True).scores[0] for item in ITEMS]
    for row, single in zip(reused, alone, strict=True):
        assert row == pytest.approx(single, abs=1e-5)


def test_label_scores_follow_sglang_rules() -> None:
    assert label_scores([0.0, 0.0], True) == [0.5, 0.5]
    assert label_scores([-1.0, float("-inf")], False) == pytest.approx([0.36787944, 0.0])
    assert label_scores([-1.0, -2.0], True, temperature=0.5)[0] == pytest.approx(0.88079708)
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # each keeps a token of its own
    assert shared_prefix_length([[1, 2], [3]]) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"query": "a", "items": ["b"], "label_token_ids": [999]}, "outside the vocabulary"),
        ({"query": "a", "items": ["b"], "label_token_ids": [[2], [3]]}, "2 lists for 1 items"),
        ({"query": "a", "items": ["b"]}, "query, items and label_token_ids are required"),
        ({"query": "a", "items": [[2]], "label_token_ids": [2]}, "both be text or both"),
        ({"query": "a", "items": [], "label_token_ids": [2]}, "items must not be empty"),
        ({"query": 5, "items": ["b"], "label_token_ids": [2]}, "invalid request: query"),
    ],
)
def test_bad_score_requests_are_400_with_one_message(lm_server, body, message) -> None:
    reply = httpx.post(f"{lm_server}/v1/score", json=body)
    assert reply.status_code == 400
    assert reply.json()["object"] == "error" and message in reply.json()["message"]


def test_routes_for_clients_tokenize_models_info(lm_server) -> None:
    tokens = httpx.post(f"{lm_server}/tokenize", json={"prompt": "yes no"}).json()
    assert tokens == {"tokens": LABELS, "count": 2, "max_model_len": 128}
    batch = httpx.post(f"{lm_server}/v1/tokenize", json={"prompt": ["yes", "no step"]}).json()
    assert batch["tokens"] == [[LABELS[0]], [LABELS[1], VOCAB["step"]]]
    text = httpx.post(f"{lm_server}/detokenize", json={"tokens": LABELS}).json()["text"]
    assert text == "yes no"
    info = httpx.get(f"{lm_server}/server_info").json()
    assert (info["engine"], info["head"], info["dtype"]) == ("rebase-transformers", "causal-lm",
                                                             "float32")  # fmt: skip
    assert (
        httpx.get(f"{lm_server}/v1/models").json()["data"][0]["owned_by"] == "rebase-transformers"
    )
    refused = httpx.post(f"{lm_server}/classify", json={"text": "yes"})
    assert refused.status_code == 400 and "use /v1/score" in refused.json()["message"]


def test_classify_returns_the_heads_logits_per_text(cls_server, tiny_models) -> None:
    texts = ["the step is correct", "no", "the answer is 3 so it is 3"]
    reply = httpx.post(f"{cls_server}/classify", json={"text": texts}).json()
    single = httpx.post(f"{cls_server}/classify", json={"text": texts[1]}).json()

    head = transformers.AutoModelForSequenceClassification.from_pretrained(tiny_models["cls"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_models["cls"])
    assert [r["index"] for r in reply] == [0, 1, 2]
    for text, result in zip(texts, reply, strict=True):
        with torch.inference_mode():
            expected = head(tokenizer(text, return_tensors="pt").input_ids).logits[0].tolist()
        assert result["embedding"] == pytest.approx(expected, abs=1e-5)
        assert result["meta_info"]["prompt_tokens"] == len(text.split())
    assert single["embedding"] == pytest.approx(reply[1]["embedding"], abs=1e-6)
    refused = httpx.post(f"{cls_server}/v1/score",
                         json={"query": "a", "items": ["b"], "label_token_ids": [2]})  # fmt: skip
    assert refused.status_code == 400 and "use /classify" in refused.json()["message"]


def test_a_model_that_cannot_load_exits_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rebase_cli.serving.reward_server", "--model",
         str(tmp_path / "missing"), "--port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"error: cannot load {tmp_path / 'missing'}" in result.stderr
    assert "Traceback" not in result.stderr
