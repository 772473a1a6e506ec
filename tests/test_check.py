"""`rebase check` against small fake servers (one per way a real server breaks a run) and the
simulator, and the cheap part of it that `rebase search` runs before a new run."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from tests.http_fakes import Reply, Request, ScriptedServer, models_handler

GOOD, BAD = 648, 387  # the llemma-metamath template's label ids ("+", "-")
REFERENCE = "18"  # GSM8K problem 0's answer


def policy_handler(
    *,
    n_honoured: bool = True,
    seed_honoured: bool = True,
    shared_seed: bool = False,
    stop_field: str | None = "matched_stop",
    delimits: bool = True,
    final: str | None = f"The answer is: {REFERENCE}",
    greedy: bool = False,
    one_piece: bool = False,
) -> Callable[[Request], Reply]:
    """/v1/completions of a model that writes "Step k: ..." lines, then (after two steps) a
    final line and EOS. Each knob breaks one thing a run relies on."""
    unseeded = itertools.count(1000)

    def handle(request: Request) -> Reply:
        body = request.body or {}
        depth = body["prompt"].count("Step ")
        count = body.get("n", 1) if n_honoured else 1
        choices = []
        for i in range(count):
            if greedy:
                tag = 0
            elif seed_honoured and body.get("seed") is not None:
                tag = body["seed"] + (0 if shared_seed else i)
            else:
                tag = next(unseeded)
            if one_piece:  # the whole solution in one call, never stopping at the delimiter
                text, finish, stop = f"Step 1: {tag} and so The answer is: {REFERENCE}", "stop", 2
            elif not delimits:
                text, finish, stop = f"Step {depth + 1}: and so on {tag} and on", "length", None
            elif depth >= 2:
                text, finish, stop = final or "I am done.", "stop", 2  # EOS, as SGLang says
            else:
                text, finish, stop = f"Step {depth + 1}: add {tag}", "stop", "\n"
            choice: dict[str, Any] = {"index": i, "text": text, "finish_reason": finish}
            if stop_field:
                choice[stop_field] = stop
            choices.append(choice)
        usage = {"prompt_tokens": 9, "completion_tokens": 4 * count, "total_tokens": 9 + 4 * count}
        reply = {"id": "c", "object": "text_completion", "created": 0, "model": body.get("model")}
        return Reply.json({**reply, "choices": choices, "usage": usage})

    return handle


def score_handler(constant: float | None = None) -> Callable[[Request], Reply]:
    """/v1/score of a PRM that likes steps with the right answer (or gives one constant)."""

    def handle(request: Request) -> Reply:
        items = request.body["items"]
        rows = []
        for item in items:
            good = constant if constant is not None else (0.9 if REFERENCE in item else 0.2)
            rows.append([good, 1 - good])
        usage = {"prompt_tokens": 5 * len(items), "total_tokens": 5 * len(items)}
        return Reply.json(
            {"scores": rows, "model": "fake-prm", "object": "scoring", "usage": usage}
        )

    return handle


def tokenize_handler(vocabulary: dict[str, list[int]]) -> Callable[[Request], Reply]:
    def handle(request: Request) -> Reply:
        tokens = vocabulary[request.body["prompt"]]
        return Reply.json({"tokens": tokens, "count": len(tokens), "max_model_len": 4096})

    return handle


@pytest.fixture
def servers() -> Iterator[Callable[..., tuple[str, str]]]:
    """Start a fake policy and a fake PRM; returns (policy URL, reward URL)."""
    started: list[ScriptedServer] = []

    def start(
        policy: Callable[[Request], Reply] | None = None,
        score: Callable[[Request], Reply] | None = None,
        vocabulary: dict[str, list[int]] | None = None,
    ) -> tuple[str, str]:
        fake_policy = ScriptedServer().start()
        fake_policy.route("/v1/models", models_handler("fake-policy"))
        fake_policy.route("/v1/completions", policy or policy_handler())
        fake_reward = ScriptedServer().start()
        fake_reward.route("/v1/models", models_handler("fake-prm"))
        fake_reward.route("/v1/score", score or score_handler())
        if vocabulary is not False:
            fake_reward.route(
                "/tokenize", tokenize_handler(vocabulary or {"+": [GOOD], "-": [BAD]})
            )
        started.extend([fake_policy, fake_reward])
        return fake_policy.url, fake_reward.url

    yield start
    for server in started:
        server.stop()


def check(tmp_path: Path, policy: str, reward: str, *extra: str) -> tuple[int, dict, str]:
    result = CliRunner().invoke(
        app,
        ["--db", str(tmp_path / "check.db"), "check", "--dataset", "gsm8k", "--policy", policy,
         "--reward", reward, "--max-depth", "4", "--request-timeout", "5", "--server-wait", "1",
         "--json", *extra],
    )  # fmt: skip
    payload = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.exit_code, payload, result.stderr


def statuses(payload: dict) -> dict[str, str]:
    return {f["check"]: f["status"] for f in payload["findings"]}


def finding(payload: dict, name: str) -> dict:
    return next(f for f in payload["findings"] if f["check"] == name)


def test_a_well_behaved_pair_passes_every_probe(servers, tmp_path: Path) -> None:
    code, payload, _ = check(tmp_path, *servers())
    assert code == 0
    assert statuses(payload) == {
        "policy.server": "ok", "reward.server": "ok", "policy.n": "ok", "policy.seed": "ok",
        "policy.stop": "ok", "reward.labels": "ok", "reward.scores": "ok",
        "policy.delimiter": "ok", "policy.answer": "ok",
    }  # fmt: skip
    assert payload["blocked"] is False and payload["full"] is True
    assert "'+' = 648, '-' = 387" in finding(payload, "reward.labels")["detail"]
    assert "correct step 0.9000, wrong step 0.2000" in finding(payload, "reward.scores")["detail"]
    assert "answers read: 18 (ref 18)" in finding(payload, "policy.answer")["detail"]


def test_a_label_that_is_two_tokens_is_a_blocker(servers, tmp_path: Path) -> None:
    code, payload, stderr = check(tmp_path, *servers(vocabulary={"+": [10, 11], "-": [BAD]}))
    assert code == 1 and "blocked: reward.labels" in stderr
    labels = finding(payload, "reward.labels")
    assert labels["status"] == "blocker" and "'+' is 2 tokens [10, 11]" in labels["detail"]


def test_a_label_with_another_id_is_a_blocker_naming_the_right_id(servers, tmp_path) -> None:
    code, payload, _ = check(tmp_path, *servers(vocabulary={"+": [27], "-": [BAD]}))
    labels = finding(payload, "reward.labels")
    assert code == 1 and labels["status"] == "blocker"
    assert "token 27" in labels["detail"] and "sends 648" in labels["detail"]
    assert labels["hint"] == "set prm.good_token_id: 27 in template 'llemma-metamath'"


def test_a_reward_server_without_tokenize_is_a_warning(servers, tmp_path: Path) -> None:
    code, payload, _ = check(tmp_path, *servers(vocabulary=False), "--quick")
    assert code == 0 and statuses(payload)["reward.labels"] == "warn"
    assert payload["full"] is False and "policy.delimiter" not in statuses(payload)


def test_constant_scores_are_a_blocker(servers, tmp_path: Path) -> None:
    code, payload, _ = check(tmp_path, *servers(score=score_handler(constant=1.0)))
    scores = finding(payload, "reward.scores")
    assert code == 1 and scores["status"] == "blocker"
    assert "same score (correct step 1.0000, wrong step 1.0000)" in scores["detail"]


def test_a_policy_that_never_ends_a_step_is_a_blocker(servers, tmp_path: Path) -> None:
    code, payload, _ = check(tmp_path, *servers(policy=policy_handler(delimits=False)))
    delimiter = finding(payload, "policy.delimiter")
    assert code == 1 and delimiter["status"] == "blocker"
    assert "never ended a step at the delimiter '\\n'" in delimiter["detail"]
    assert "--template" in delimiter["hint"]


def test_a_whole_solution_in_one_piece_warns_but_does_not_block(servers, tmp_path) -> None:
    code, payload, _ = check(tmp_path, *servers(policy=policy_handler(one_piece=True)))
    delimiter = finding(payload, "policy.delimiter")
    assert code == 0 and delimiter["status"] == "warn"
    assert "the answer came in one piece" in delimiter["detail"]
    assert statuses(payload)["policy.answer"] == "ok"


def test_a_template_with_one_id_for_both_labels_is_a_blocker(servers, tmp_path) -> None:
    template = tmp_path / "same-ids.yaml"
    template.write_text(
        'name: same-ids\nprompt: "Q: {question}\\nA:\\n"\nstep_delimiter: "\\n"\n'
        "prm:\n  good_token_id: 387\n  bad_token_id: 387\n"
    )
    code, payload, _ = check(tmp_path, *servers(), "--template", str(template), "--quick")
    labels = finding(payload, "reward.labels")
    assert code == 1 and labels["status"] == "blocker"
    assert "both label tokens the id 387" in labels["detail"]


def test_solutions_that_end_without_a_readable_answer_are_a_blocker(servers, tmp_path) -> None:
    code, payload, _ = check(tmp_path, *servers(policy=policy_handler(final="So that is it.")))
    answer = finding(payload, "policy.answer")
    assert code == 1 and answer["status"] == "blocker"
    assert statuses(payload)["policy.delimiter"] == "ok"  # steps did end; the answer is unread
    assert "answer_format" in answer["hint"]


def test_ignored_n_seed_and_stop_reporting_are_warnings(servers, tmp_path: Path) -> None:
    policy = policy_handler(n_honoured=False, seed_honoured=False, stop_field=None)
    code, payload, _ = check(tmp_path, *servers(policy=policy))
    assert code == 0
    found = statuses(payload)
    assert (found["policy.n"], found["policy.seed"], found["policy.stop"]) == ("warn",) * 3
    assert "1 choice for n=4" in finding(payload, "policy.n")["detail"]
    assert "not reproducible" in finding(payload, "policy.seed")["detail"]


def test_n_choices_that_share_the_seed_warn_towards_one_sample_per_request(servers, tmp_path):
    code, payload, _ = check(tmp_path, *servers(policy=policy_handler(shared_seed=True)))
    n = finding(payload, "policy.n")
    assert code == 0 and n["status"] == "warn" and "--samples-per-request 1" in n["hint"]


def test_a_server_that_does_not_sample_warns(servers, tmp_path: Path) -> None:
    code, payload, _ = check(tmp_path, *servers(policy=policy_handler(greedy=True)))
    seed = finding(payload, "policy.seed")
    assert code == 0 and seed["status"] == "warn" and "does not sample" in seed["detail"]


def test_the_table_shows_each_finding_and_the_hint_of_a_blocker(servers, tmp_path) -> None:
    policy_url, reward_url = servers(score=score_handler(constant=0.5))
    result = CliRunner().invoke(
        app, ["--db", str(tmp_path / "c.db"), "check", "--dataset", "gsm8k", "--policy",
              policy_url, "--reward", reward_url, "--quick"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "reward.scores" in result.stdout and "blocker" in result.stdout
    assert "rebase check" not in result.stderr and "blocked: reward.scores" in result.stderr


def test_search_refuses_a_blocker_before_creating_a_run(servers, tmp_path: Path) -> None:
    policy_url, reward_url = servers(score=score_handler(constant=1.0))
    db = tmp_path / "search.db"
    args = ["--db", str(db), "search", "--dataset", "gsm8k", "--budget", "2", "--limit", "1",
            "--policy", policy_url, "--reward", reward_url, "--max-depth", "3"]  # fmt: skip
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1
    assert "server check failed: the PRM gives a correct and a wrong step the same score" in (
        refused.stderr
    )
    assert "--skip-check starts the run anyway" in refused.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM run").fetchone()[0] == 0

    forced = CliRunner().invoke(app, [*args, "--skip-check"])
    assert forced.exit_code == 0, forced.stderr
    with sqlite3.connect(db) as conn:
        [capabilities] = conn.execute("SELECT capabilities_json FROM run").fetchone()
    assert "check" not in json.loads(capabilities)


def test_search_stores_the_cheap_check_and_runs_show_prints_it(tmp_path: Path) -> None:
    db = tmp_path / "sim.db"
    base = ["--db", str(db)]
    search = CliRunner().invoke(
        app, [*base, "search", "--dataset", "gsm8k", "--budget", "2", "--limit", "1",
              "--policy", "sim", "--reward", "sim"],
    )  # fmt: skip
    assert search.exit_code == 0, search.stderr
    # Nothing to warn about on the default simulator: its n choices differ (seed + i), and
    # its PRM reads any label ids (no tokenizer to check them against).
    assert "check " not in search.stdout

    shown = CliRunner().invoke(app, [*base, "runs", "show", "run-1", "--json"])
    capabilities = json.loads(shown.stdout)["capabilities"]
    check_payload = capabilities["check"]
    assert check_payload["full"] is False and check_payload["blocked"] is False
    assert [f["check"] for f in check_payload["findings"]] == [
        "policy.server", "reward.server", "policy.n", "policy.seed", "policy.stop",
        "reward.labels", "reward.scores",
    ]  # fmt: skip
    assert "SIMULATED" in check_payload["findings"][0]["detail"]
    found = {f["check"]: f["status"] for f in check_payload["findings"]}
    assert found["policy.n"] == "ok" and found["reward.labels"] == "skipped"
    # What the run learnt about the policy is stored beside the check, not over it.
    assert capabilities["n_supported"] is True

    table = CliRunner().invoke(app, [*base, "runs", "show", "run-1"])
    assert "server check before the run" in table.stdout and "reward.labels" in table.stdout

    resumed = CliRunner().invoke(
        app, [*base, "search", "--run", "run-1", "--policy", "sim", "--reward", "sim"]
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert "check reward.labels" not in resumed.stdout  # resuming does not probe again


def test_an_unreachable_policy_is_one_line_and_no_traceback(servers, tmp_path: Path) -> None:
    _, reward_url = servers()
    code, payload, stderr = check(tmp_path, "http://127.0.0.1:9", reward_url, "--server-wait", "0")
    assert code == 1 and payload == {}
    assert "policy server http://127.0.0.1:9 unreachable" in stderr
    assert "Traceback" not in stderr and stderr.count("error:") == 1


@pytest.mark.parametrize(
    ("route", "body", "kind"),
    [
        ("/server_info", {"version": "0.5.23", "tp_size": 1}, "SGLang 0.5.23"),
        ("/version", {"version": "0.33.0"}, "vLLM 0.33.0"),
        ("/server_info", {"engine": "rebase-transformers", "version": "0.1.0"},
         "rebase transformers reward server 0.1.0"),
        ("/model_info", {"simulated": True}, "rebase simulator (SIMULATED)"),
        (None, None, "OpenAI-compatible server (kind and version not reported)"),
    ],
)  # fmt: skip
def test_the_server_kind_is_read_from_each_familys_own_route(route, body, kind) -> None:
    import asyncio

    from rebase_cli.checking.server_kind import server_kind
    from rebase_cli.clients.transport import Endpoint

    fake = ScriptedServer().start()
    if route is not None:
        fake.route(route, lambda request: Reply.json(body))

    async def probe() -> str:
        endpoint = Endpoint("policy", fake.url)
        try:
            return await server_kind(endpoint)
        finally:
            await endpoint.aclose()

    try:
        assert asyncio.run(probe()) == kind
    finally:
        fake.stop()
