"""The runner in process: the in-memory store and fake clients (plain objects with the
client methods the runner calls, answering deterministically), no servers, no subprocesses."""

from __future__ import annotations

import asyncio
import random
import zlib
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from rebase_cli.clients.policy import StepRequest
from rebase_cli.domain import (
    Completion,
    LevelCommit,
    NewNode,
    Problem,
    ProblemRecord,
    RunStatus,
    ScoreBatch,
    StepBatch,
)
from rebase_cli.errors import EndpointError, RunLockedError
from rebase_cli.prompts import load_template
from rebase_cli.runner.config import build_config
from rebase_cli.runner.context import DelimiterMonitor, SearchContext
from rebase_cli.runner.runner import CONSECUTIVE_FAILURE_LIMIT, RunAborted, execute_run
from rebase_cli.runner.service import strategy_for
from rebase_cli.store.database import Database
from rebase_cli.store.memory_store import InMemorySearchStore, MemoryRun
from rebase_cli.store.models import Run
from rebase_cli.store.problems import add_problems, problems_of_run
from rebase_cli.store.runs import create_run
from rebase_cli.store.search_store import SearchStore
from rebase_cli.store.sqlite_store import SqliteSearchStore
from rebase_cli.store.trees import read_nodes

Hook = Callable[[int, str], Awaitable[None]]
TTL = timedelta(seconds=30)


class FakePolicy:
    """Steps that depend only on (prompt, seed, sample index), so a resumed search gets the
    same children as an uninterrupted one. About one step in three answers. `hook(call,
    prompt)` runs before each answer (to block, fail or take the lease away)."""

    def __init__(self, hook: Hook | None = None) -> None:
        self.hook = hook
        self.calls = 0

    async def expand(self, prompt: str, n: int, **sampling: object) -> StepBatch:
        self.calls += 1
        if self.hook is not None:
            await self.hook(self.calls, prompt)
        depth = prompt.count("Step ") + 1
        completions = []
        for index in range(n):
            draw = random.Random(f"{sampling['seed']}:{index}:{prompt}").random()
            text = f"Step {depth}: " + (
                "The answer is: 7" if draw < 0.35 else f"carry {int(draw * 1000)}"
            )
            completions.append(Completion(text, "stop", "\n", 6))
        return StepBatch(tuple(completions), prompt_tokens=len(prompt) // 4,
                         completion_tokens=6 * n, requests=1)  # fmt: skip

    async def expand_level(self, steps: list[StepRequest], *, depth: int = 0) -> list[StepBatch]:
        """Each parent asked on its own, all at once (the /v1/completions plan)."""
        return list(
            await asyncio.gather(
                *(self.expand(s.prompt, s.n, seed=s.seed, stop=s.stop) for s in steps)
            )
        )


class FakeReward:
    """Scores in [0, 1] from the step text alone; records the candidates of each request."""

    def __init__(self) -> None:
        self.requests: list[list[str]] = []

    async def score_level(
        self, question: str, groups: list[tuple[list[str], list[str]]]
    ) -> ScoreBatch:
        candidates = [text for _, texts in groups for text in texts]
        self.requests.append(candidates)
        scores = tuple((zlib.crc32(text.encode()) % 1000) / 1000 for text in candidates)
        return ScoreBatch(scores, tokens=10 * len(candidates), requests=1)


class RecordingEvents:
    def __init__(self) -> None:
        self.problems: list[ProblemRecord] = []
        self.levels: list[tuple[int, int]] = []  # (problem id, depth)
        self.finished: list[tuple[int, str]] = []

    def started(self, problems: list[ProblemRecord]) -> None:
        self.problems = list(problems)

    def level_committed(self, problem: ProblemRecord, level: LevelCommit) -> None:
        self.levels.append((problem.id, level.depth))

    def problem_finished(self, problem: ProblemRecord, status: str, error: str | None) -> None:
        self.finished.append((problem.dataset_index, status))


PROBLEMS = [Problem(i, f"p{i}", f"What is {i} + 7 - {i}?", "7") for i in range(4)]


def context(
    store: SearchStore, policy: FakePolicy | None = None, concurrency: int = 2, method="rebase"
) -> SearchContext:
    config = build_config(
        {"method": method, "budget": 4, "max_depth": 5, "concurrency": concurrency}
    )
    return SearchContext(
        store=store,
        config=config,
        template=load_template(config.template),
        strategy=strategy_for(config),
        policy=policy or FakePolicy(),
        reward=FakeReward(),
        events=RecordingEvents(),
        monitor=DelimiterMonitor(),
    )


def trees(run: MemoryRun) -> dict[int, list[NewNode]]:
    return {p.record.dataset_index: p.nodes for p in run.problems.values()}


def search(run: MemoryRun, owner: str = "me", **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.run(execute_run(context(InMemorySearchStore(run, owner), **kwargs)))


def uninterrupted() -> dict[int, list[NewNode]]:
    run = MemoryRun(PROBLEMS)
    search(run)
    return trees(run)


def test_each_problem_is_searched_level_by_level_until_the_strategy_stops() -> None:
    run = MemoryRun(PROBLEMS)
    store = InMemorySearchStore(run, "me")
    ctx = context(store)
    outcome = asyncio.run(execute_run(ctx))
    assert not outcome.interrupted and outcome.aborted is None and outcome.failures == []
    assert run.status == RunStatus.DONE.value and run.lease_owner is None
    assert store.status_counts() == {"done": 4}
    events = ctx.events
    assert [p.dataset_index for p in events.problems] == [0, 1, 2, 3]
    assert sorted(events.finished) == [(i, "done") for i in range(4)]
    for problem in run.problems.values():
        depths = [depth for pid, depth in events.levels if pid == problem.record.id]
        assert depths == list(range(problem.depth_completed + 1))  # one event per level, in order
        ended = [n for n in problem.nodes if n.terminal]
        assert len(ended) >= 4  # the budget: REBASE stops once `width` paths have ended
        assert max(n.depth for n in problem.nodes) <= 5  # and never goes past max_depth
        assert problem.counters.policy_requests > 0 and problem.counters.reward_requests > 0


def test_the_sqlite_store_gets_the_same_trees(db: Database) -> None:
    stored = create_run(
        db,
        Run(method="rebase", dataset="d", dataset_sha256="x", budget=4, config_json="{}",
            fingerprint="f"),
    )  # fmt: skip
    add_problems(db, stored.id, PROBLEMS)
    store = SqliteSearchStore(db, stored.id, "me")
    asyncio.run(execute_run(context(store)))
    with db.driver_read() as cursor:
        loaded = {
            row.dataset_index: list(read_nodes(cursor, row.id))
            for row in problems_of_run(db, stored.id)
        }
    assert loaded == uninterrupted()


def test_a_resume_after_a_cancellation_finishes_with_the_same_trees() -> None:
    run = MemoryRun(PROBLEMS)
    reached = asyncio.Event()
    blocked: list[str] = []  # the prompt of the first depth-3 request

    async def block_at_depth_two(call: int, prompt: str) -> None:
        if prompt.count("Step ") == 2 and not reached.is_set():
            blocked.append(prompt)
            reached.set()
        if reached.is_set():
            await asyncio.Event().wait()  # a request that never returns

    async def cancelled_session():  # type: ignore[no-untyped-def]
        task = asyncio.create_task(
            execute_run(context(InMemorySearchStore(run, "first"), FakePolicy(block_at_depth_two)))
        )
        await reached.wait()
        await asyncio.sleep(0.01)  # other parents of the level get their steps and scores
        task.cancel()
        return await task

    outcome = asyncio.run(cancelled_session())
    assert outcome.interrupted and run.status == RunStatus.INTERRUPTED.value
    # Only whole levels were committed: each tree is the uninterrupted tree up to some depth,
    # and nothing of the level in flight exists.
    whole = uninterrupted()
    for index, nodes in trees(run).items():
        depth = max((n.depth for n in nodes), default=-1)
        assert nodes == [n for n in whole[index] if n.depth <= depth]
        if f"What is {index} +" in blocked[0]:
            assert depth == 2
    assert any(len(nodes) > 1 for nodes in trees(run).values())
    search(run, owner="second")
    assert run.status == RunStatus.DONE.value
    assert trees(run) == whole


def failing_on(questions: set[int]) -> Hook:
    async def hook(call: int, prompt: str) -> None:
        if any(f"What is {i} +" in prompt for i in questions):
            raise EndpointError("policy server returned 500", "check the server")

    return hook


def test_an_endpoint_error_fails_its_problem_and_the_run_goes_on() -> None:
    run = MemoryRun(PROBLEMS)
    outcome = search(run, policy=FakePolicy(failing_on({1})), concurrency=1)
    assert outcome.failures == [(1, "policy server returned 500 (check the server)")]
    assert InMemorySearchStore(run, "x").status_counts() == {"done": 3, "failed": 1}
    # Failed problems keep the run out of `done`, so that --resume retries them.
    assert run.status == RunStatus.FAILED.value
    failed = next(p for p in run.problems.values() if p.record.dataset_index == 1)
    assert failed.error == "policy server returned 500 (check the server)"
    search(run, owner="retry")
    assert run.status == RunStatus.DONE.value and trees(run) == uninterrupted()


def test_five_failures_in_a_row_abort_the_run() -> None:
    problems = [Problem(i, f"p{i}", f"What is {i} + 7 - {i}?", "7") for i in range(8)]
    run = MemoryRun(problems)
    bad = set(range(1, 1 + CONSECUTIVE_FAILURE_LIMIT))
    store = InMemorySearchStore(run, "me")
    with pytest.raises(RunAborted, match="5 problems in a row failed"):
        asyncio.run(execute_run(context(store, FakePolicy(failing_on(bad)), concurrency=1)))
    assert store.status_counts() == {"done": 1, "failed": 5, "pending": 2}
    assert run.status == RunStatus.FAILED.value and run.lease_owner is None


def test_a_level_in_flight_when_the_lease_is_lost_is_never_committed() -> None:
    run = MemoryRun(PROBLEMS[:1])
    committed: list[int] = []

    async def taken_over_at_call_three(call: int, prompt: str) -> None:
        if call == 3:  # while level 2 is in flight
            committed.append(len(trees(run)[0]))
            InMemorySearchStore(run, "thief").take_lease(TTL, lambda holder: True)

    with pytest.raises(RunLockedError, match="taken over"):
        search(run, policy=FakePolicy(taken_over_at_call_three), concurrency=1)
    assert len(trees(run)[0]) == committed[0]  # the level of call 3 was refused
    assert run.lease_owner == "thief" and run.status == RunStatus.RUNNING.value


def test_the_heartbeat_stops_a_run_whose_lease_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBASE_LEASE_TTL", "0.15")  # a heartbeat every 50 ms
    run = MemoryRun(PROBLEMS[:1])

    async def taken_then_stuck(call: int, prompt: str) -> None:
        if call == 2:
            InMemorySearchStore(run, "thief").take_lease(TTL, lambda holder: True)
            await asyncio.Event().wait()  # the search itself would never notice

    with pytest.raises(RunLockedError, match="taken over"):
        search(run, policy=FakePolicy(taken_then_stuck))
    assert run.lease_owner == "thief"


def test_a_level_is_scored_in_one_request_and_each_score_lands_on_its_own_node() -> None:
    """`sample` expands every open node, so its levels have several parents: each level costs
    one reward request holding every candidate of the level, in parent order, and every node
    keeps the score of its own text (the scores are a function of the text alone)."""
    run = MemoryRun(PROBLEMS[:1])
    ctx = context(InMemorySearchStore(run, "me"), method="sample")
    outcome = asyncio.run(asyncio.wait_for(execute_run(ctx), timeout=10))
    assert not outcome.interrupted and run.status == RunStatus.DONE.value
    [problem] = run.problems.values()
    nodes = [n for n in problem.nodes if n.depth > 0]
    levels = sorted({n.depth for n in nodes})
    assert len(ctx.reward.requests) == len(levels)
    for depth, candidates in zip(levels, ctx.reward.requests, strict=True):
        level = [n for n in nodes if n.depth == depth]
        assert candidates == [n.text for n in level]
        for node in level:
            assert node.score == (zlib.crc32(node.text.encode()) % 1000) / 1000
    # Some level holds the children of several parents.
    assert any(
        len({(n.depth, n.parent_ordinal) for n in nodes if n.depth == d}) > 1 for d in levels
    )
