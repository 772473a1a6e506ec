"""Scoring whole paths: for every reward protocol the per-step scores equal what step-by-step
scoring of the same steps gets, with fewer requests; servers without the setwise readout are
detected and the per-path fallback is used from then on.

Real HTTP everywhere: the simulator in a thread (serving or refusing the setwise readout) and
a scripted server standing in for an older SGLang that ignores the field.
"""

from __future__ import annotations

import asyncio

import pytest

from rebase_cli.clients.path_reward import PathScorer
from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.clients.reward import make_reward_client
from rebase_cli.datasets import load_dataset
from rebase_cli.prompts import load_template
from rebase_cli.sim import SimConfig, start_in_thread
from tests.http_fakes import Reply, ScriptedServer

TEMPLATE = load_template("llemma-metamath")


@pytest.fixture(scope="module")
def problem():
    return load_dataset("gsm8k").problems[3]


def _paths(problem) -> list[list[str]]:  # type: ignore[no-untyped-def]
    steps = [s for s in problem.solution.split("\n") if s.strip()][:3]
    right = [f"Step {k + 1}: {s}" for k, s in enumerate(steps)]
    wrong = [right[0], "Step 2: 2 + 2 = 5.", "The answer is: 3"]
    return [right, wrong, [right[0]]]


async def _step_by_step(reward, question: str, paths: list[list[str]]):  # type: ignore[no-untyped-def]
    out = []
    for steps in paths:
        batches = [await reward.score(question, steps[:k], [steps[k]]) for k in range(len(steps))]
        out.append(tuple(b.scores[0] for b in batches))
    return out


@pytest.mark.parametrize(
    ("protocol", "setwise", "requests"),
    [
        ("score", True, 1),  # one setwise request for every step of every path
        ("score", False, 3),  # setwise refused (HTTP 400, nothing scored): one per path
        ("pooling", None, 3),
        ("classify", None, 3),
    ],
)
def test_whole_path_scores_equal_step_by_step_scores(
    problem, protocol: str, setwise: bool | None, requests: int
) -> None:
    config = SimConfig(role="reward", port=0, score_extraction=bool(setwise))
    paths = _paths(problem)

    async def scenario():  # type: ignore[no-untyped-def]
        with start_in_thread(config) as sim:
            reward = make_reward_client(protocol, sim.url, prm=TEMPLATE.prm)
            scorer = PathScorer(reward)
            try:
                per_path, batch = await scorer.score_paths(problem.question, paths)
                expected = await _step_by_step(reward, problem.question, paths)
            finally:
                await reward.aclose()
            return scorer, per_path, batch, expected

    scorer, per_path, batch, expected = asyncio.run(scenario())
    assert [len(p) for p in per_path] == [len(p) for p in paths]
    for got, want in zip(per_path, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-12)
    assert batch.scores == tuple(s for p in per_path for s in p)
    assert scorer.setwise is (setwise if protocol == "score" else None)
    assert batch.requests == requests


def test_a_server_that_ignores_the_setwise_field_gets_the_fallback_for_the_rest_of_the_run(
    problem,
) -> None:
    """An older SGLang accepts `score_extraction_token` silently and answers flat rows (one
    per item, at its last token): the scorer must not read those as per-step scores."""
    server = ScriptedServer()

    def score(request):  # type: ignore[no-untyped-def]
        items = request.body["items"]
        return Reply.json({"scores": [[0.75, 0.25] for _ in items], "object": "scoring"})

    server.route("/v1/score", score)
    server.start()
    paths = _paths(problem)

    async def scenario():  # type: ignore[no-untyped-def]
        reward = make_reward_client(
            "score", server.url, prm=TEMPLATE.prm, model="m", retry=RetryPolicy(max_attempts=1)
        )
        scorer = PathScorer(reward)
        try:
            first, _ = await scorer.score_paths(problem.question, paths)
            second, batch = await scorer.score_paths(problem.question, paths)
        finally:
            await reward.aclose()
        return scorer, first, second, batch

    try:
        scorer, first, second, batch = asyncio.run(scenario())
    finally:
        server.stop()
    assert scorer.setwise is False
    assert first == second == [(0.75,) * len(p) for p in paths]
    bodies = [r.body for r in server.requests_to("/v1/score")]
    assert sum("score_extraction_token" in b for b in bodies) == 1  # tried once, then never
    assert batch.requests == len(paths)  # one request per path, its step prefixes as items
    # (sent concurrently, so they arrive in any order)
    assert sorted(len(b["items"]) for b in bodies[-len(paths) :]) == sorted(len(p) for p in paths)
