"""Reliability features of the simulator: seeded fault injection at the configured rates
(the server survives all of it), the latency/capacity/prefix-cache model, the loading phase,
and the command line's one-line errors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from rebase_cli.datasets import load_dataset
from rebase_cli.errors import ConfigError, ServeError
from rebase_cli.sim import FaultConfig, LatencyConfig, SimConfig, start_in_thread
from rebase_cli.sim.spawn import spawn
from tests.conftest import SHARED_DATA

DATA_ENV = {"REBASE_DATA_DIR": os.environ.get("REBASE_DATA_DIR") or str(SHARED_DATA)}
RATES = {"http_500": 0.1, "http_503": 0.1, "hang": 0.05, "malformed": 0.1}
REQUESTS = 600


@pytest.fixture(scope="module")
def problems():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REBASE_DATA_DIR", DATA_ENV["REBASE_DATA_DIR"])
        return load_dataset("gsm8k").problems[:50]


async def fire(url: str, count: int) -> dict[str, int]:
    """Send `count` step requests, 30 at a time, with a 2 s timeout; tally what came back.

    The timeout sits well under the injected hang (6 s) and well over an ordinary request on a
    busy machine, so only injected hangs time out."""
    outcomes = {"ok": 0, "http_500": 0, "http_503": 0, "hang": 0, "malformed": 0}
    body = {"prompt": "Tom has 3 apples and buys 4 more. How many?", "stop": ["\n"], "seed": 1}
    pending = iter(range(count))
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:

        async def worker() -> None:
            for _ in pending:
                try:
                    response = await client.post("/v1/completions", json=body)
                except httpx.TimeoutException:
                    outcomes["hang"] += 1
                    continue
                if response.status_code != 200:
                    outcomes[f"http_{response.status_code}"] += 1
                    continue
                try:
                    json.loads(response.content)
                except json.JSONDecodeError:
                    outcomes["malformed"] += 1
                else:
                    outcomes["ok"] += 1

        await asyncio.gather(*(worker() for _ in range(30)))
    return outcomes


def test_faults_come_at_the_configured_rates_and_the_server_survives():
    args = ["--role", "policy", "--port", "0", "--seed", "3", "--hang-seconds", "6"]
    args += ["--fault-500", "0.1", "--fault-503", "0.1", "--fault-hang", "0.05"]
    args += ["--fault-malformed", "0.1"]
    with spawn(args, env=DATA_ENV) as server:
        outcomes = asyncio.run(fire(server.url, REQUESTS))
        assert sum(outcomes.values()) == REQUESTS
        for fault, rate in RATES.items():
            assert abs(outcomes[fault] / REQUESTS - rate) < 0.04, (fault, outcomes)
        assert outcomes["ok"] > REQUESTS * 0.5
        stats = httpx.get(server.url + "/sim/stats").json()
        assert stats["faults"] == {fault: outcomes[fault] for fault in RATES}
        assert httpx.get(server.url + "/health").status_code == 200
        assert server.process.poll() is None


def test_the_same_seed_meets_the_same_faults(problems):
    config = SimConfig(port=0, seed=9, faults=FaultConfig(http_500=0.3))
    codes = []
    for _ in range(2):
        with start_in_thread(config, problems=problems) as server, httpx.Client() as client:
            url = server.url + "/v1/completions"
            codes.append([client.post(url, json={"prompt": "x"}).status_code for _ in range(40)])
    assert codes[0] == codes[1] and 500 in codes[0] and 200 in codes[0]


def test_capacity_queues_requests_and_stats_give_the_ideal_time(problems):
    latency = LatencyConfig(base_ms=40, max_running=2)
    with start_in_thread(SimConfig(port=0, latency=latency), problems=problems) as server:

        async def six_at_once() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                body = {"prompt": "What is 2 + 2?", "stop": ["\n"]}
                calls = [client.post("/v1/completions", json=body) for _ in range(6)]
                return [r.status_code for r in await asyncio.gather(*calls)]

        start = time.perf_counter()
        assert asyncio.run(six_at_once()) == [200] * 6
        wall = time.perf_counter() - start
        stats = httpx.get(server.url + "/sim/stats").json()
    assert stats["max_in_flight"] == 2 and stats["queue_seconds"] > 0
    assert stats["ideal_seconds"] == pytest.approx(6 * 0.040 / 2)
    assert wall >= stats["ideal_seconds"]  # nobody can beat the server-bound floor


def test_each_sequence_of_a_batch_frees_its_slot_when_it_is_done(problems):
    """SGLang schedules every input of a /generate batch as its own request (and vLLM every
    choice of n): a short sequence frees its slot at once, whatever its siblings still do."""
    latency = LatencyConfig(output_token_ms=20, max_running=2, prefix_cache=False)
    config = SimConfig(port=0, flavour="sglang-deterministic", latency=latency)
    question = problems[0].question

    def item(max_new_tokens: int) -> dict:
        return {"text": question, "sampling_params": {"max_new_tokens": max_new_tokens}}

    with start_in_thread(config, problems=problems) as server:

        async def batch_then_single() -> tuple[list[str], list[int]]:
            done: list[str] = []
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def post(name: str, items: list[dict]) -> list[dict]:
                    body = {
                        "text": [i["text"] for i in items],
                        "sampling_params": [i["sampling_params"] for i in items],
                    }
                    reply = (await client.post("/generate", json=body)).json()
                    done.append(name)
                    return reply

                batch = asyncio.create_task(post("batch", [item(1), item(30)]))
                await asyncio.sleep(0.005)  # the batch holds both slots first
                single = await post("single", [item(1)])
                outputs = await batch + single
            return done, [o["meta_info"]["completion_tokens"] for o in outputs]

        done, tokens = asyncio.run(batch_then_single())
        stats = httpx.get(server.url + "/sim/stats").json()
    assert tokens[0] == tokens[2] == 1 and tokens[1] > 10
    # The single input took the short sequence's slot and finished long before the batch.
    assert done == ["single", "batch"]
    # The ideal counts each sequence's own time, not the longest one's for every slot.
    assert stats["ideal_seconds"] == pytest.approx(sum(tokens) * 0.020 / 2)


@pytest.mark.parametrize("priority_scheduling", [True, False], ids=["by-priority", "fifo"])
def test_waiting_requests_go_by_priority_only_on_a_priority_scheduling_server(
    problems, priority_scheduling
):
    """SGLang with --enable-priority-scheduling serves waiting requests by `priority`, higher
    first and one without a priority last, then by arrival; without it, by arrival alone."""
    latency = LatencyConfig(
        output_token_ms=20,
        max_running=1,
        prefix_cache=False,
        priority_scheduling=priority_scheduling,
    )
    config = SimConfig(port=0, flavour="sglang-deterministic", latency=latency)
    question = problems[0].question

    with start_in_thread(config, problems=problems) as server:

        async def arrive_in_order() -> list[str]:
            done: list[str] = []
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def post(name: str, tokens: int, priority: int | None) -> None:
                    body: dict = {"text": question, "sampling_params": {"max_new_tokens": tokens}}
                    if priority is not None:
                        body["priority"] = priority
                    (await client.post("/generate", json=body)).raise_for_status()
                    done.append(name)

                tasks = [asyncio.create_task(post("blocker", 10, 0))]
                for name, priority in (("low", 0), ("none", None), ("high", 5)):
                    await asyncio.sleep(0.01)  # arrive in this order while the blocker runs
                    tasks.append(asyncio.create_task(post(name, 1, priority)))
                await asyncio.gather(*tasks)
            return done

        done = asyncio.run(arrive_in_order())
    expected = ["high", "low", "none"] if priority_scheduling else ["low", "none", "high"]
    assert done == ["blocker", *expected]


def test_priority_scheduling_is_refused_on_a_server_that_has_none() -> None:
    latency = LatencyConfig(priority_scheduling=True)
    with pytest.raises(ConfigError, match="SGLang option"):
        SimConfig(flavour="vllm", latency=latency).validate()


def test_prefix_cache_makes_a_repeated_prompt_cheaper(problems):
    latency = LatencyConfig(prompt_token_ms=0.01)
    prompt = problems[0].question * 3
    with start_in_thread(SimConfig(port=0, latency=latency), problems=problems) as server:
        busy = []
        for _ in range(2):
            httpx.post(server.url + "/v1/completions", json={"prompt": prompt, "stop": ["\n"]})
            busy.append(httpx.get(server.url + "/sim/stats").json())
    assert busy[0]["cached_prompt_tokens"] == 0 < busy[1]["cached_prompt_tokens"]
    first = busy[0]["busy_seconds"]
    assert busy[1]["busy_seconds"] - first < first / 2


def test_health_says_503_while_loading(problems):
    config = SimConfig(port=0, load_seconds=0.5)
    with start_in_thread(config, problems=problems) as server:
        assert httpx.get(server.url + "/health").status_code == 503
        deadline = time.monotonic() + 10
        while httpx.get(server.url + "/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "2"], "error rate 2.0 is outside [0, 1]"),
        (["--dataset", "/nonexistent/file.jsonl"], "unknown dataset"),
        (["--policy-model-id", "llama"], "must start with 'sim-'"),
    ],
)
def test_command_line_errors_are_one_line(args, message):
    result = subprocess.run(
        [sys.executable, "-m", "rebase_cli.sim", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **DATA_ENV},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_busy_port_is_reported():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match="cannot listen"):
            spawn(["--port", str(port)], env=DATA_ENV)
