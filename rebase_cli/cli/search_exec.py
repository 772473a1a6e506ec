"""Running one search from the CLI: progress, the opening lines and the closing summary."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.console import Console

from rebase_cli.cli.search_progress import ProgressEvents
from rebase_cli.runner import reproducibility
from rebase_cli.runner.setup import PreparedRun, RunRequest
from rebase_cli.store import repository as repo
from rebase_cli.store.database import Database

if TYPE_CHECKING:  # the runner pulls in the clients (openai), which other commands need not pay for
    from rebase_cli.runner.runner import RunOutcome
    from rebase_cli.runner.service import EndpointRequest


def execute_search(
    db: Database,
    run_request: RunRequest,
    endpoints: EndpointRequest,
    out: Console,
) -> tuple[PreparedRun, RunOutcome, dict]:
    """Prepare and search one run, showing progress on `out`; returns the prepared run, its
    outcome and the summary (`--json` form) after printing it as a line."""
    from rebase_cli.runner.service import run_search

    holder: dict[str, ProgressEvents] = {}

    def on_prepared(prepared, endpoint_info) -> None:  # type: ignore[no-untyped-def]
        out.print(f"[bold]{prepared.note}[/]: {prepared.run.method} on {prepared.run.dataset}, "
                  f"budget {prepared.run.budget}, db {db.path}")  # fmt: skip
        if endpoint_info.simulated:
            out.print(
                "[bold yellow]SIMULATED[/]: the policy/reward are the built-in simulator; "
                "accuracy numbers are synthetic."
            )

    def events(prepared):  # type: ignore[no-untyped-def]
        holder["events"] = ProgressEvents(out, f"run-{prepared.run.id}").__enter__()
        return holder["events"]

    try:
        prepared, outcome = asyncio.run(run_search(db, run_request, endpoints, events, on_prepared))
    finally:
        if "events" in holder:
            holder["events"].__exit__(None, None, None)
    totals = repo.run_totals(db, prepared.run.id)
    facts = reproducibility.read(repo.resolve_run(db, f"run-{prepared.run.id}").capabilities_json)
    summary = {"run": f"run-{prepared.run.id}", "interrupted": outcome.interrupted, **totals,
               "wall_seconds": round(outcome.wall_seconds, 2), **facts.as_dict()}  # fmt: skip
    out.print(
        f"run-{prepared.run.id}: {totals['done']}/{totals['problems']} problems done, "
        f"{totals['failed']} failed, {totals['nodes']:,} nodes, "
        f"{totals['policy_prompt_tokens'] + totals['policy_completion_tokens']:,} policy "
        f"tokens, {totals['reward_tokens']:,} reward tokens in {outcome.wall_seconds:.1f}s"
    )
    out.print(f"reproducible: {facts.line}", highlight=False)
    for index, error in outcome.failures[:10]:
        out.print(f"  [red]problem {index} failed[/]: {error}")
    return prepared, outcome, summary
