"""Runs the problems of one run concurrently, under a lease, with progress events.

Concurrency: `config.concurrency` problems are searched at once (the service layer sizes an
auto concurrency from the policy server's capacity before the run starts); inside a problem all
expansions of a level are in flight together; the clients cap in-flight requests per endpoint.
Cancellation (Ctrl-C) stops issuing requests; levels already committed stay, and a level in
progress is simply never committed. The run is marked interrupted and can be resumed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from rebase_cli.domain import ProblemRecord, ProblemStatus, RunStatus
from rebase_cli.errors import ConfigError, EndpointError, RebaseError
from rebase_cli.runner.context import SearchContext
from rebase_cli.runner.holder import holder_is_gone
from rebase_cli.runner.problem_search import ProblemSearch
from rebase_cli.runner.signals import finish_despite_cancel
from rebase_cli.store.leases import lease_lost_error
from rebase_cli.store.search_store import SearchStore

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
    """What a search session did: its wall time, whether it was cancelled (`interrupted`) or
    stopped by a run-level error (`aborted`), and the problems that failed (dataset index,
    error)."""

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
    cancellation at any point (even while it is being taken) ends in closing the run, so it
    is never left `running` under the lease of a process that carried on; `interrupted` says
    the caller was already cancelled, and the run is then closed as interrupted at once.
    Every write of the search goes through `ctx.store`, which checks the lease in the write's
    own transaction: a process that lost the run while stalled can never commit a level over
    the new holder's."""
    store = ctx.store
    ttl = lease_ttl()
    acquire = asyncio.to_thread(store.take_lease, ttl, holder_is_gone)
    interrupted = await finish_despite_cancel(acquire) or interrupted
    outcome = RunOutcome()
    started = time.monotonic()
    search: asyncio.Task[None] | None = None
    heartbeat: asyncio.Task[None] | None = None
    try:
        if interrupted:
            raise asyncio.CancelledError
        problems = await asyncio.to_thread(store.pending_problems)
        ctx.events.started(problems)
        search = asyncio.create_task(_search_all(ctx, problems, outcome))
        heartbeat = asyncio.create_task(_heartbeat(ctx, ttl))
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
        await asyncio.to_thread(_close_run, store, outcome)
    return outcome


def final_status(outcome: RunOutcome, counts: Mapping[str, int]) -> RunStatus:
    """The run's status after a session, from its outcome and its problems' status counts:
    `done` only when every problem is done, so a run with failed problems stays visible to
    `--resume`, which retries them."""
    if outcome.interrupted:
        return RunStatus.INTERRUPTED
    if outcome.aborted:
        return RunStatus.FAILED
    open_statuses = {status for status, count in counts.items() if count} - {
        ProblemStatus.DONE.value
    }
    if open_statuses - {ProblemStatus.FAILED.value}:
        return RunStatus.INTERRUPTED
    return RunStatus.FAILED if open_statuses else RunStatus.DONE


def _close_run(store: SearchStore, outcome: RunOutcome) -> None:
    # A run taken over by another process keeps the status that process gives it.
    status = final_status(outcome, store.status_counts())
    store.close(status, outcome.wall_seconds)


async def _heartbeat(ctx: SearchContext, ttl: timedelta) -> None:
    while True:
        await asyncio.sleep(ttl.total_seconds() / 3)
        renewed = await asyncio.to_thread(ctx.store.renew_lease, ttl)
        if not renewed:
            raise lease_lost_error(ctx.run_id)


async def _search_all(
    ctx: SearchContext, problems: list[ProblemRecord], outcome: RunOutcome
) -> None:
    queue: asyncio.Queue[ProblemRecord] = asyncio.Queue()
    for problem in problems:
        queue.put_nowait(problem)
    state = {"consecutive_failures": 0}
    workers = [
        asyncio.create_task(_worker(ctx, queue, outcome, state))
        for _ in range(min(ctx.config.problems_at_once(None), max(1, len(problems))))
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


async def _worker(
    ctx: SearchContext,
    queue: asyncio.Queue[ProblemRecord],
    outcome: RunOutcome,
    state: dict[str, int],
) -> None:
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
            await asyncio.to_thread(ctx.store.fail_problem, problem.id, message)
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
        ctx.events.problem_finished(problem, ProblemStatus.DONE.value, None)
