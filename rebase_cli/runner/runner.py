"""Runs the problems of one run concurrently, under a lease, with progress events.

Concurrency: `config.concurrency` problems are searched at once; inside a problem all
expansions of a level are in flight together; the clients cap in-flight requests per endpoint.
Cancellation (Ctrl-C) stops issuing requests; levels already committed stay, and a level in
progress is simply never committed. The run is marked interrupted and can be resumed.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

from rebase_cli.domain import ProblemStatus, RunStatus
from rebase_cli.errors import ConfigError, EndpointError, RebaseError, RunLockedError
from rebase_cli.runner.context import SearchContext
from rebase_cli.runner.holder import holder_is_gone, lease_owner
from rebase_cli.runner.problem_search import ProblemSearch
from rebase_cli.runner.signals import finish_despite_cancel
from rebase_cli.store import repository as repo
from rebase_cli.store.models import ProblemRow

LEASE_TTL = timedelta(seconds=30)
# Seconds; overrides LEASE_TTL. Tests and the torture benchmark shorten it so that a lease left
# by a SIGKILLed process expires in seconds; a shared filesystem with slow writes may lengthen it.
LEASE_TTL_ENV = "REBASE_LEASE_TTL"
# A run whose problems keep failing on endpoint errors stops instead of failing them all.
CONSECUTIVE_FAILURE_LIMIT = 5


def lease_ttl() -> timedelta:
    """How long a lease lives without a heartbeat: REBASE_LEASE_TTL seconds, else LEASE_TTL.

    The heartbeat renews it every third of that, so a live holder never loses it to a
    scheduling hiccup shorter than two heartbeats."""
    raw = os.environ.get(LEASE_TTL_ENV)
    if raw is None or not raw.strip():
        return LEASE_TTL
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 86_400:
        raise ConfigError(
            f"{LEASE_TTL_ENV}={raw!r} is not a number of seconds between 0.1 and 86400",
            f"unset it or set e.g. {LEASE_TTL_ENV}=30",
        )
    return timedelta(seconds=seconds)


@dataclass
class RunOutcome:
    """What a search session did; `interrupted` is set when it was cancelled."""

    run_id: int
    problems_total: int
    problems_done: int = 0
    problems_failed: int = 0
    wall_seconds: float = 0.0
    interrupted: bool = False
    aborted: str | None = None
    failures: list[tuple[int, str]] = field(default_factory=list)


class RunAborted(RebaseError):
    """The run stopped because endpoints kept failing (e.g. a server that stays down)."""


async def execute_run(ctx: SearchContext, *, interrupted: bool = False) -> RunOutcome:
    """Search the run's unfinished problems and set the run's final status.

    The lease is taken before anything else: only its holder may reset problems that a killed
    process left `running` and continue them from their last committed level. Once taken, a
    cancellation at any point (even while it is being taken) ends in `_close_run`, so the run
    is never left `running` under the lease of a process that carried on; `interrupted` says
    the caller was already cancelled, and the run is then closed as interrupted at once."""
    owner = lease_owner()
    ttl = lease_ttl()
    acquire = asyncio.to_thread(repo.acquire_lease, ctx.db, ctx.run_id, owner, ttl, holder_is_gone)
    interrupted = await finish_despite_cancel(acquire) or interrupted
    # Every write of the search checks the lease in its own transaction: a process that lost
    # the run while stalled can never commit a level over the new holder's.
    fenced = replace(ctx, db=repo.FencedDatabase(ctx.db, ctx.run_id, owner))
    outcome = RunOutcome(run_id=ctx.run_id, problems_total=0)
    started = time.monotonic()
    search: asyncio.Task[None] | None = None
    heartbeat: asyncio.Task[None] | None = None
    try:
        if interrupted:
            raise asyncio.CancelledError
        await asyncio.to_thread(repo.reset_unfinished, fenced.db, ctx.run_id)
        problems = await asyncio.to_thread(
            repo.problems_of_run, ctx.db, ctx.run_id, [ProblemStatus.PENDING.value]
        )
        ctx.events.started(problems)
        outcome.problems_total = len(problems)
        search = asyncio.create_task(_search_all(fenced, problems, outcome))
        heartbeat = asyncio.create_task(_heartbeat(ctx, owner, ttl))
        # Whichever ends first decides: the search finishing, or the lease being lost.
        await asyncio.wait([search, heartbeat], return_when=asyncio.FIRST_COMPLETED)
        if heartbeat.done():
            search.cancel()
            await asyncio.gather(search, return_exceptions=True)
            heartbeat.result()  # raises RunLockedError
        search.result()
    except asyncio.CancelledError:
        outcome.interrupted = True
        if search is not None:
            search.cancel()
            await asyncio.gather(search, return_exceptions=True)
    except Exception as exc:
        # A run-level error (a wrong template, a lost lease, endpoints that stay down) fails the
        # run; its committed levels stay and a resume continues from them.
        outcome.aborted = exc.one_line() if isinstance(exc, RebaseError) else repr(exc)
        raise
    finally:
        if heartbeat is not None:
            heartbeat.cancel()
        outcome.wall_seconds = time.monotonic() - started
        status = _final_status(ctx, outcome)
        await asyncio.to_thread(_close_run, ctx, owner, status, outcome.wall_seconds)
    return outcome


def _final_status(ctx: SearchContext, outcome: RunOutcome) -> RunStatus:
    if outcome.interrupted:
        return RunStatus.INTERRUPTED
    if outcome.aborted:
        return RunStatus.FAILED
    statuses = {
        problem.status
        for problem in repo.problems_of_run(
            ctx.db,
            ctx.run_id,
            statuses=[
                ProblemStatus.PENDING.value,
                ProblemStatus.RUNNING.value,
                ProblemStatus.FAILED.value,
            ],
        )
    }
    if statuses - {ProblemStatus.FAILED.value}:
        return RunStatus.INTERRUPTED
    # `done` means every problem is done: a run with failed problems stays visible to
    # `--resume`, which retries them.
    return RunStatus.FAILED if statuses else RunStatus.DONE


def _close_run(ctx: SearchContext, owner: str, status: RunStatus, wall: float) -> None:
    # A run taken over by another process keeps the status that process gives it.
    repo.close_run(ctx.db, ctx.run_id, owner, status, wall_seconds=wall)


async def _heartbeat(ctx: SearchContext, owner: str, ttl: timedelta) -> None:
    while True:
        await asyncio.sleep(ttl.total_seconds() / 3)
        renewed = await asyncio.to_thread(repo.renew_lease, ctx.db, ctx.run_id, owner, ttl)
        if not renewed:
            raise RunLockedError(
                f"run-{ctx.run_id} was taken over by another process", "let that process finish"
            )


async def _search_all(ctx: SearchContext, problems: list[ProblemRow], outcome: RunOutcome) -> None:
    queue: asyncio.Queue[ProblemRow] = asyncio.Queue()
    for problem in problems:
        queue.put_nowait(problem)
    state = {"consecutive_failures": 0}
    workers = [
        asyncio.create_task(_worker(ctx, queue, outcome, state))
        for _ in range(min(ctx.config.concurrency, max(1, len(problems))))
    ]
    try:
        # The first worker error (a run-level problem such as a wrong template) stops them all.
        done, _ = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _worker(ctx, queue, outcome: RunOutcome, state: dict) -> None:  # type: ignore[no-untyped-def]
    while True:
        try:
            problem = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        try:
            await ProblemSearch(ctx, problem).run()
        except EndpointError as exc:
            # One problem failing loudly never drops budget silently: it is marked failed with
            # its error. Many in a row mean the endpoint itself is gone: stop the run.
            message = exc.one_line()
            await asyncio.to_thread(repo.fail_problem, ctx.db, problem.id, message)
            outcome.problems_failed += 1
            outcome.failures.append((problem.dataset_index, message))
            ctx.events.problem_finished(problem, ProblemStatus.FAILED.value, message)
            state["consecutive_failures"] += 1
            if state["consecutive_failures"] >= CONSECUTIVE_FAILURE_LIMIT:
                outcome.aborted = message
                raise RunAborted(
                    f"stopped after {CONSECUTIVE_FAILURE_LIMIT} problems in a row failed: "
                    f"{message}",
                    f"fix the server, then resume with `rebase search --run run-{ctx.run_id}`",
                ) from None
            continue
        state["consecutive_failures"] = 0
        outcome.problems_done += 1
        ctx.events.problem_finished(problem, ProblemStatus.DONE.value, None)
