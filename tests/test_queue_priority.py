"""Request priorities for a policy server that orders its queue by them (SGLang's
--enable-priority-scheduling): read from /server_info, sent on every policy request, shallower
levels first, never far enough apart to preempt running work."""

from __future__ import annotations

import asyncio
from itertools import pairwise

import pytest

from rebase_cli.clients import PolicyClient, RetryPolicy
from rebase_cli.clients.policy import StepRequest
from rebase_cli.clients.queue_priority import (
    DEPTHS_DISTINGUISHED,
    QueuePriority,
    queue_priority_from_server_info,
)
from tests.http_fakes import (
    Reply,
    ScriptedServer,
    completions_handler,
    generate_handler,
    models_handler,
)
from tests.test_conformance import SGLANG as SGLANG_CLASSES
from tests.test_conformance import violations

FAST = RetryPolicy(max_attempts=2, timeout=5.0, backoff_initial=0.001, backoff_max=0.01)
SGLANG = {"version": "0.5.23", "schedule_policy": "fcfs"}


def test_the_server_info_says_whether_and_how_the_queue_is_ordered() -> None:
    read = queue_priority_from_server_info
    assert read(SGLANG) is None  # first come, first served
    assert read({**SGLANG, "enable_priority_scheduling": False}) is None
    assert read({**SGLANG, "enable_priority_scheduling": True, "schedule_policy": "lpm"}) is None
    on = {**SGLANG, "enable_priority_scheduling": True}
    # Preemption on (SGLang's default): priorities stay within its threshold (default 10).
    assert read(on) == QueuePriority(False, 10)
    assert read({**on, "priority_scheduling_preemption_threshold": 3}) == QueuePriority(False, 3)
    assert read({**on, "disable_priority_preemption": True}) == QueuePriority(
        False, DEPTHS_DISTINGUISHED
    )
    assert read({**on, "schedule_low_priority_values_first": True}).low_values_first


@pytest.mark.parametrize("low_first", [False, True])
@pytest.mark.parametrize("spread", [0, 3, 10, DEPTHS_DISTINGUISHED])
def test_a_shallower_level_is_more_urgent_and_no_two_levels_preempt(low_first, spread) -> None:
    order = QueuePriority(low_first, spread)
    values = [order.for_depth(depth) for depth in range(40)]
    urgency = [-v if low_first else v for v in values]  # larger: served first
    assert all(a >= b for a, b in pairwise(urgency))
    assert all(a > b for a, b in pairwise(urgency[: spread + 1]))
    # SGLang preempts when a waiting request's priority exceeds a running one's by more than
    # the threshold: the spread of our values never does.
    assert max(values) - min(values) <= spread


def sglang_fake(info: dict, bodies: list[dict]) -> ScriptedServer:
    fake = ScriptedServer().start()

    def generate(request):
        bodies.append(request.body)
        return generate_handler()(request)

    def completions(request):
        bodies.append(request.body)
        return completions_handler()(request)

    fake.route("/v1/models", models_handler("served-model"))
    fake.route("/server_info", lambda request: Reply.json(info))
    fake.route("/generate", generate)
    fake.route("/v1/completions", completions)
    return fake


@pytest.mark.parametrize("max_n", [None, 1], ids=["generate-batch", "completions"])
@pytest.mark.parametrize("enabled", [True, False], ids=["priority-queue", "fcfs"])
def test_every_policy_request_carries_its_levels_priority_where_the_server_orders_by_it(
    max_n, enabled
) -> None:
    info = {**SGLANG, "enable_priority_scheduling": enabled}
    bodies: list[dict] = []
    fake = sglang_fake(info, bodies)
    steps = [StepRequest("p", 2, ("\n",), 64, 0.7, seed=5), StepRequest("q", 1, (), 32, 0.7)]

    async def go():
        client = PolicyClient(fake.url, retry=FAST, max_n=max_n)
        try:
            for depth in (0, 4, 30):
                await client.expand_level(steps, depth=depth)
            return client.capabilities
        finally:
            await client.aclose()

    try:
        caps = asyncio.run(go())
    finally:
        fake.stop()
    per_level = 1 if max_n is None else 3  # one batch, or one request per child
    assert len(bodies) == 3 * per_level
    if enabled:
        # Preemption on at threshold 10: depths 0, 4 and 30 get 10, 6 and 0.
        expected = [10] * per_level + [6] * per_level + [0] * per_level
        assert [body["priority"] for body in bodies] == expected
        # Each body is one SGLang 0.5.23 takes (`priority` is a field of both classes).
        klass = "GenerateReqInput" if max_n is None else "CompletionRequest"
        assert all(violations(body, SGLANG_CLASSES, klass) == [] for body in bodies)
        assert caps["queue_priority"] == "shallower levels first"
    else:
        assert not any("priority" in body for body in bodies)  # SGLang may abort on one
        assert caps["queue_priority"] is None
