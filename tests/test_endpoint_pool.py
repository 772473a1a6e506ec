"""Several reward (and policy) servers behind one client: real simulator processes, the real
openai client. Affinity keeps a problem on one server; a dead server's problems move; a server
that comes back is taken back; servers serving different models are refused."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

from rebase_cli.clients import PolicyClient, affinity, make_reward_client
from rebase_cli.clients.pool import EndpointPool, server_figures
from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.errors import EndpointError, UsageError
from rebase_cli.sim.spawn import SpawnedSimulator, spawn
from rebase_cli.url_lists import split_urls
from tests.search_helpers import _data_env, port_of

QUESTION = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"  # noqa: E501
FAST_RETRY = RetryPolicy(
    max_attempts=4, timeout=10, max_total_wait=8, backoff_initial=0.05, backoff_max=0.2, jitter=0
)


def reward_sim(*extra: str, port: int = 0) -> SpawnedSimulator:
    return spawn(
        ["--role", "reward", "--port", str(port), "--dataset", "gsm8k", *extra], env=_data_env()
    )


def score_requests(sim: SpawnedSimulator) -> int:
    with urllib.request.urlopen(f"{sim.url}/sim/stats", timeout=10) as reply:
        return json.loads(reply.read())["requests"].get("/v1/score", 0)


async def score_as(client, key: int, step: str = "She sold 48 / 2 = 24 clips in May."):
    with affinity.bound_to(key):
        return await client.score(QUESTION, [], [step, "48 + 24 = 72."])


def test_split_urls_accepts_commas_and_repetition() -> None:
    assert split_urls("http://a:1, http://b:2,") == ("http://a:1", "http://b:2")
    assert split_urls(["http://a:1", "http://b:2,http://c:3"]) == (
        "http://a:1",
        "http://b:2",
        "http://c:3",
    )


def test_a_url_given_twice_is_refused() -> None:
    with pytest.raises(UsageError, match="given twice"):
        EndpointPool("reward", ["http://127.0.0.1:1/v1", "http://127.0.0.1:1"])


def test_each_problem_stays_on_one_server_and_moves_when_it_dies() -> None:
    first, second = reward_sim(), reward_sim()
    try:

        async def scenario() -> None:
            client = make_reward_client("score", f"{first.url},{second.url}", retry=FAST_RETRY)
            pool = client.endpoint
            assert isinstance(pool, EndpointPool)
            try:
                # Four problems: two per server, and every request of a problem on its server.
                for _ in range(3):
                    for key in range(4):
                        await score_as(client, key)
                assert (score_requests(first), score_requests(second)) == (6, 6)
                homes = {key: pool._assigned[key].url for key in range(4)}
                assert sorted(homes.values()) == sorted([first.url] * 2 + [second.url] * 2)

                # The first server dies: its problems finish on the second, with the same scores.
                before = await score_as(client, 0)
                dead_port = port_of(first)
                first.stop()
                moved = [k for k, url in homes.items() if url == first.url]
                for key in moved:
                    again = await score_as(client, key)
                    assert again.scores == before.scores
                    assert pool._assigned[key].url == second.url
                figures = server_figures(pool)
                assert figures is not None
                assert figures[first.url]["outages"] == 1
                assert figures[first.url]["problems_moved_away"] == len(moved)
                assert figures[first.url]["up"] is False
                assert figures[second.url]["problems"] == 4
                assert figures[second.url]["tokens"] > 0

                # It comes back on the same port: the health check takes it back; the moved
                # problems stay where their cache now is, a new problem goes to it.
                revived = reward_sim(port=dead_port)
                try:
                    for _ in range(100):
                        if pool.figures()[first.url]["up"]:
                            break
                        await asyncio.sleep(0.1)
                    assert pool.figures()[first.url]["up"] is True
                    await score_as(client, 99)
                    assert pool._assigned[99].url == first.url
                    assert all(pool._assigned[k].url == second.url for k in moved)
                    assert score_requests(revived) == 1
                finally:
                    revived.stop()
            finally:
                await client.aclose()

        asyncio.run(scenario())
    finally:
        first.stop()
        second.stop()


def test_every_server_down_fails_in_bounded_time_naming_them() -> None:
    first, second = reward_sim(), reward_sim()
    urls = f"{first.url},{second.url}"
    first.stop()
    second.stop()
    retry = RetryPolicy(
        max_attempts=3, timeout=5, max_total_wait=1.5, backoff_initial=0.05, jitter=0
    )

    async def scenario() -> None:
        client = make_reward_client("score", urls, retry=retry)
        try:
            with pytest.raises(EndpointError) as caught:
                await score_as(client, 1)
        finally:
            await client.aclose()
        assert "unreachable" in caught.value.message
        assert first.url in caught.value.message and second.url in caught.value.message

    asyncio.run(scenario())


def test_servers_of_different_models_are_refused() -> None:
    with (
        reward_sim() as first,
        reward_sim("--reward-model-id", "sim-other-prm") as second,
    ):

        async def scenario() -> None:
            client = make_reward_client("score", [first.url, second.url], retry=FAST_RETRY)
            try:
                with pytest.raises(EndpointError, match="serve different models"):
                    await client.model_id()
            finally:
                await client.aclose()

        asyncio.run(scenario())


def test_policy_client_spreads_problems_over_its_servers() -> None:
    env = _data_env()
    args = ["--role", "policy", "--port", "0", "--dataset", "gsm8k"]
    with spawn(args, env=env) as first, spawn(args, env=env) as second:

        async def scenario() -> None:
            client = PolicyClient(f"{first.url},{second.url}", retry=FAST_RETRY)
            single = PolicyClient(first.url, retry=FAST_RETRY)
            try:
                assert await client.model_id() == "sim-policy"
                prompt = f"Question: {QUESTION}\nAnswer:\n"
                for key in range(2):
                    with affinity.bound_to(key):
                        batch = await client.expand(
                            prompt, 3, stop=["\n"], max_new_tokens=64, temperature=1.0, seed=key
                        )
                    alone = await single.expand(
                        prompt, 3, stop=["\n"], max_new_tokens=64, temperature=1.0, seed=key
                    )
                    # A pool answers what one server answers: the server is not in the sample.
                    assert [c.text for c in batch.completions] == [
                        c.text for c in alone.completions
                    ]
                figures = client.endpoint.figures()
                assert [f["problems"] for f in figures.values()] == [1, 1]
                assert all(f["requests"] >= 1 for f in figures.values())
            finally:
                await client.aclose()
                await single.aclose()

        asyncio.run(scenario())


def test_a_server_failing_every_attempt_is_ejected_after_three() -> None:
    # It answers /health but every scoring request gets HTTP 500: after three failed attempts
    # in a row its problem moves to the healthy server.
    with reward_sim("--fault-500", "1.0") as broken, reward_sim() as healthy:
        retry = RetryPolicy(
            max_attempts=6, timeout=10, max_total_wait=8, backoff_initial=0.05, jitter=0
        )

        async def scenario() -> None:
            client = make_reward_client("score", [broken.url, healthy.url], retry=retry)
            pool = client.endpoint
            try:
                batch = await score_as(client, 1)  # the first problem goes to the first server
                assert batch.retries == 3
                figures = pool.figures()
                assert figures[broken.url]["failed_attempts"] == 3
                assert figures[broken.url]["outages"] == 1
                assert figures[broken.url]["problems_moved_away"] == 1
                assert figures[healthy.url]["requests"] == 1
            finally:
                await client.aclose()

        asyncio.run(scenario())
