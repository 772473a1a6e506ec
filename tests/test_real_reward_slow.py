"""A real PRM on the CPU: SmolLM2-135M-Instruct as a Yes/No judge behind our reward server.

`rebase serve reward --engine transformers` is started by the real CLI (readiness, registry,
logs, stop), its /v1/score is checked against probabilities computed here with transformers
directly, and `rebase search` runs with SmolLM2 as the policy (`transformers serve`) and as the
judge: nothing in that run is simulated, and every node's score is the server's probability.

Same requirements as test_real_model_slow.py (the transformers extra, the prepared model).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rebase_cli.clients import prm_text
from rebase_cli.prompts import load_template
from tests.test_real_model_slow import model_path, policy_url  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TEMPLATE = "smollm2-judge"
BUDGET, LIMIT, MAX_DEPTH, STEP_TOKENS = 4, 2, 3, 24


def _rebase(db: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rebase_cli", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def reward_server(
    model_path: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path]]:
    """(URL, database) of a reward server started and registered by `rebase serve reward`."""
    db = tmp_path_factory.mktemp("reward-serve") / "serve.db"
    started = _rebase(
        db, "serve", "reward", "--engine", "transformers", "--model", str(model_path),
        "--port", "0", "--detach", "--timeout", "300",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        status = _rebase(db, "serve", "status", "--json")
        [row] = json.loads(status.stdout)
        assert (row["role"], row["engine"], row["healthy"]) == ("reward", "transformers", True)
        yield row["url"], db
    finally:
        stopped = _rebase(db, "serve", "stop", "reward")
        assert stopped.returncode == 0, stopped.stderr
    assert json.loads(_rebase(db, "serve", "status", "--json").stdout) == []


@functools.cache
def _load(model: Path):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    return tokenizer, AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()


def _direct_probabilities(model: Path, text: str, labels: list[int]) -> tuple[list, list]:
    """(softmax over `labels`, full-vocabulary probabilities of `labels`) of the next token
    after `text`, with transformers in this process (float32, as the server loads it)."""
    import torch

    tokenizer, lm = _load(model)
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.inference_mode():
        logits = lm(ids).logits[0, -1].float()
    restricted = torch.softmax(logits[labels], dim=-1).tolist()
    full = torch.softmax(logits, dim=-1)[labels].tolist()
    return restricted, full


def test_score_is_sglangs_next_token_distribution_of_query_plus_item(
    reward_server: tuple[str, Path],
    model_path: Path,  # noqa: F811
) -> None:
    url, db = reward_server
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    prm = load_template(TEMPLATE).prm
    question = "Natalia has 48 clips and sells half of them. How many clips are left?"
    query = prm_text.score_query(question, ["She sells 48 / 2 = 24 clips."], prm)
    items = [prm_text.score_item(s, prm) for s in ("She keeps 48 - 24 = 24.", "She keeps 30.")]
    # The boundary: the query ends in a space that merges with the item's first word, so
    # tokenising query and item apart is NOT what SGLang scores.
    for item in items:
        apart = tokenizer.encode(query) + tokenizer.encode(item, add_special_tokens=False)
        assert apart != tokenizer.encode(query + item)
    labels = [prm.good_token_id, prm.bad_token_id]

    with httpx.Client(base_url=url, timeout=120) as client:
        body = {"query": query, "items": items, "label_token_ids": labels}
        softmaxed = client.post("/v1/score", json={**body, "apply_softmax": True}).json()
        raw = client.post("/v1/score", json={**body, "apply_softmax": False}).json()
        short = client.post(
            "/v1/score", json={"query": "Is 2 + 2 = 4? ", "items": ["Yes", "No"],
                               "label_token_ids": labels, "apply_softmax": True},
        ).json()  # fmt: skip
        tokens = client.post("/tokenize", json={"prompt": "Yes", "add_special_tokens": False})
        logs = _rebase(db, "serve", "logs", "reward")

    assert softmaxed["object"] == "scoring" and len(softmaxed["scores"]) == 2
    expected_tokens = sum(len(tokenizer.encode(query + item)) for item in items)
    assert softmaxed["usage"]["prompt_tokens"] == expected_tokens
    for item, row, raw_row in zip(items, softmaxed["scores"], raw["scores"], strict=True):
        restricted, full = _direct_probabilities(model_path, query + item, labels)
        assert row == pytest.approx(restricted, abs=1e-4)
        assert sum(row) == pytest.approx(1.0)
        assert raw_row == pytest.approx(full, abs=1e-5)
        assert sum(raw_row) < 1.0  # the whole vocabulary shares the rest
    for item, row in zip(["Yes", "No"], short["scores"], strict=True):
        assert row == pytest.approx(
            _direct_probabilities(model_path, "Is 2 + 2 = 4? " + item, labels)[0], abs=1e-4
        )
    assert tokens.json()["tokens"] == [prm.good_token_id]
    assert logs.returncode == 0 and "loaded" in logs.stdout


def test_search_with_a_real_policy_and_a_real_judge_is_not_simulated(
    policy_url: str,  # noqa: F811
    reward_server: tuple[str, Path],
    tmp_path: Path,
) -> None:
    reward_url, _ = reward_server
    db = tmp_path / "real.db"
    started = time.monotonic()
    search = _rebase(
        db, "search", "--dataset", "gsm8k", "--budget", str(BUDGET), "--limit", str(LIMIT),
        "--policy", policy_url, "--reward", reward_url, "--template", TEMPLATE,
        "--max-depth", str(MAX_DEPTH), "--max-step-tokens", str(STEP_TOKENS),
        "--temperature", "0.7", "--concurrency", str(LIMIT),
    )  # fmt: skip
    print(f"\nreal policy + real judge search: {time.monotonic() - started:.1f} s")
    assert search.returncode == 0, search.stdout + search.stderr
    assert "SIMULATED" not in search.stdout + search.stderr
    assert f"{LIMIT}/{LIMIT} problems done, 0 failed" in search.stdout

    with sqlite3.connect(db) as conn:
        simulated, capabilities = conn.execute(
            "SELECT simulated, capabilities_json FROM run"
        ).fetchone()
        nodes = conn.execute(
            "SELECT n.id, n.parent_id, n.text, n.score, p.question FROM node n "
            "JOIN problem p ON p.id = n.problem_id WHERE n.depth = 1 ORDER BY n.id"
        ).fetchall()
    assert simulated == 0
    check = json.loads(capabilities)["check"]
    statuses = {f["check"]: f["status"] for f in check["findings"]}
    assert statuses["reward.labels"] == "ok" and statuses["reward.scores"] in ("ok", "warn")
    assert "transformers reward server" in check["findings"][1]["detail"]

    # Node scores are the server's probabilities: the first-level siblings of one problem,
    # scored again as one request, give the stored scores.
    prm = load_template(TEMPLATE).prm
    question = nodes[0][4]
    siblings = [n for n in nodes if n[4] == question]
    assert len(siblings) == BUDGET
    body = {
        "query": prm_text.score_query(question, [], prm),
        "items": [prm_text.score_item(n[2], prm) for n in siblings],
        "label_token_ids": [prm.good_token_id, prm.bad_token_id],
        "apply_softmax": True,
    }
    scores = httpx.post(f"{reward_url}/v1/score", json=body, timeout=120).json()["scores"]
    assert [n[3] for n in siblings] == pytest.approx([row[0] for row in scores], abs=1e-6)
    assert len({round(n[3], 6) for n in nodes}) > 1  # the judge's scores vary

    report = _rebase(db, "report", "run-1", timeout=120)
    assert report.returncode == 0, report.stderr
    assert "SIMULATED" not in report.stdout
    shown = _rebase(db, "runs", "show", "run-1")
    assert "server check before the run" in shown.stdout and "reward.labels" in shown.stdout
