"""Running one search from the CLI: progress, the opening lines and the closing summary line.

SIGTERM and SIGHUP stop it the way Ctrl-C does (see `runner.signals`): the run is closed as
interrupted and the caller prints how to resume it (`exit_interrupted`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from rebase_cli.cli.common import err_console, with_db
from rebase_cli.cli.search_progress import ProgressEvents
from rebase_cli.reports.servers import server_rows
from rebase_cli.runner import event_loop, reproducibility
from rebase_cli.runner.setup import PreparedRun, RunRequest
from rebase_cli.store.aggregates import run_totals
from rebase_cli.store.database import Database
from rebase_cli.store.runs import resolve_run

if TYPE_CHECKING:  # the runner pulls in the clients (openai), which other commands need not pay for
    from rebase_cli.runner.runner import RunOutcome
    from rebase_cli.runner.service import EndpointRequest
    from rebase_cli.runner.signals import Received


def exit_interrupted(received: Received, resume: str) -> NoReturn:
    """After a stop: say on stderr which signal stopped the command and how to go on
    (`resume`, e.g. `resume with: rebase search --run run-3`), then exit with the signal's
    exit code."""
    by = f" by {received.name}" if received.signum else ""
    err_console.print(with_db(f"interrupted{by}; {resume}"), highlight=False, soft_wrap=True)
    raise typer.Exit(received.exit_code)


def execute_search(
    db: Database,
    run_request: RunRequest,
    endpoints: EndpointRequest,
    out: Console,
) -> tuple[PreparedRun | None, RunOutcome | None, dict, Received]:
    """Prepare and search one run, showing progress on `out`; returns the prepared run, its
    outcome, the summary (`--json` form, also printed as a line) and the stop signal received.

    The run is None when a signal stopped the command before any run was prepared (nothing
    was written); `setup.RunAlreadyDone` propagates for a run that is already finished."""
    from rebase_cli.runner.service import run_search
    from rebase_cli.runner.signals import cancel_on_signals

    holder: dict[str, ProgressEvents] = {}

    def on_prepared(prepared, endpoint_info) -> None:  # type: ignore[no-untyped-def]
        out.print(f"[bold]{prepared.note}[/]: {prepared.run.method} on {prepared.run.dataset}, "
                  f"budget {prepared.run.budget}, db {db.path}")  # fmt: skip
        at_once = f"{prepared.config.concurrency} problems at once"
        queue = prepared.policy_queue_priority
        order = "" if queue is None else f", {queue}"
        if prepared.policy_capacity is None:
            out.print(
                f"{at_once} (--concurrency; the policy server does not say its capacity){order}"
            )
        else:
            out.print(
                f"{at_once}: the policy server runs {prepared.policy_capacity} requests{order}"
            )
        if endpoint_info.simulated:
            out.print(
                "[bold yellow]SIMULATED[/]: the policy/reward are the built-in simulator; "
                "accuracy numbers are synthetic."
            )

    def on_check(report) -> None:  # type: ignore[no-untyped-def]
        for finding in report.warnings:
            out.print(f"[yellow]check {finding.check}[/]: {finding.detail}", highlight=False)

    def events(prepared):  # type: ignore[no-untyped-def]
        totals = run_totals(db, prepared.run.id)
        events = ProgressEvents(out, f"run-{prepared.run.id}", run_total=totals["problems"])
        holder["events"] = events.__enter__()
        return holder["events"]

    async def main():  # type: ignore[no-untyped-def]
        with cancel_on_signals() as received:
            try:
                searched = await run_search(
                    db, run_request, endpoints, events, on_prepared, on_check
                )
                return searched, received
            except asyncio.CancelledError:
                if received.signum is None:
                    raise
                return None, received

    try:
        result, received = event_loop.run(main())
    finally:
        if "events" in holder:
            holder["events"].__exit__(None, None, None)
    if result is None:
        return None, None, {}, received
    prepared, outcome = result
    totals = run_totals(db, prepared.run.id)
    stored = resolve_run(db, f"run-{prepared.run.id}")
    facts = reproducibility.read(stored.capabilities_json)
    summary = {"run": f"run-{prepared.run.id}", "interrupted": outcome.interrupted, **totals,
               "wall_seconds": round(outcome.wall_seconds, 2), **facts.as_dict(),
               "concurrency": prepared.config.concurrency,
               "policy_capacity": prepared.policy_capacity,
               "policy_queue_priority": prepared.policy_queue_priority}  # fmt: skip
    servers = server_rows(stored)
    if servers:
        summary["servers"] = servers
    out.print(
        f"run-{prepared.run.id}: {totals['done']}/{totals['problems']} problems done, "
        f"{totals['failed']} failed, {totals['nodes']:,} nodes, "
        f"{totals['policy_prompt_tokens'] + totals['policy_completion_tokens']:,} policy "
        f"tokens, {totals['reward_tokens']:,} reward tokens in {outcome.wall_seconds:.1f}s"
    )
    out.print(f"reproducible: {facts.line}", highlight=False)
    for row in servers:
        out.print(
            f"  {row['role']} server {row['url']}: {row['requests']:,} requests, "
            f"{row['failed_attempts']} failed attempts, {row['tokens']:,} tokens, "
            f"{row['outages']} outages, {row['problems_moved_away']} problems moved away",
            highlight=False,
        )
    for index, error in outcome.failures[:10]:
        out.print(f"  [red]problem {index} failed[/]: {error}")
    return prepared, outcome, summary, received
