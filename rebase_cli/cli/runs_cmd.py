"""`rebase runs`, `rebase runs show RUN`, `rebase runs delete RUN`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from rebase_cli.cli.common import console, open_existing_db, print_json
from rebase_cli.runner import reproducibility
from rebase_cli.store import repository as repo

app = typer.Typer(help="List, inspect and delete runs.", invoke_without_command=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def list_runs(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List runs: id, name, method, dataset, budget, status, progress, created."""
    if ctx.invoked_subcommand is not None:
        return
    rows = repo.list_runs(open_existing_db())
    if json_output:
        print_json(
            [
                {
                    "run": f"run-{run.id}",
                    "name": run.name,
                    "method": run.method,
                    "dataset": run.dataset,
                    "budget": run.budget,
                    "status": run.status,
                    "simulated": run.simulated,
                    "problems": counts,
                    "created_at": run.created_at.isoformat(),
                }
                for run, counts in rows
            ]
        )
        return
    table = Table("run", "name", "method", "dataset", "budget", "status", "progress", "created")
    for run, counts in rows:
        total = sum(counts.values())
        done = counts.get("done", 0)
        failed = counts.get("failed", 0)
        progress = f"{done}/{total}" + (f" ({failed} failed)" if failed else "")
        table.add_row(
            f"run-{run.id}",
            run.name or "",
            run.method + (" [yellow](sim)[/]" if run.simulated else ""),
            run.dataset,
            str(run.budget),
            run.status,
            progress,
            run.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)


@app.command("show")
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run-42, 42, a name or latest.")],
    json_output: JsonFlag = False,
) -> None:
    """Show one run: config, endpoints, status and totals."""
    db = open_existing_db()
    run = repo.resolve_run(db, run_ref)
    totals = repo.run_totals(db, run.id)
    facts = reproducibility.read(run.capabilities_json)
    payload = {
        "run": f"run-{run.id}",
        "name": run.name,
        "status": run.status,
        "method": run.method,
        "dataset": run.dataset,
        "dataset_sha256": run.dataset_sha256,
        "budget": run.budget,
        "simulated": run.simulated,
        "fingerprint": run.fingerprint,
        "policy": {"url": run.policy_url, "model": run.policy_model},
        "reward": {
            "url": run.reward_url,
            "model": run.reward_model,
            "protocol": run.reward_protocol,
        },
        "reproducible": facts.line,
        "token_counts": facts.token_counts,
        "capabilities": json.loads(run.capabilities_json) if run.capabilities_json else None,
        "config": json.loads(run.config_json),
        "wall_seconds": run.wall_seconds,
        "created_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "totals": totals,
    }
    if json_output:
        print_json(payload)
        return
    table = Table(show_header=False, box=None)
    for key, value in payload.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        table.add_row(key, str(value))
    console.print(table)


@app.command("delete")
def delete(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run-42, 42, a name or latest.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a run with all its problems, nodes and allocations."""
    db = open_existing_db()
    run = repo.resolve_run(db, run_ref)
    if not yes and not typer.confirm(f"Delete run-{run.id} and its whole tree?"):
        raise typer.Exit(1)
    repo.delete_run(db, run.id)
    typer.echo(f"deleted run-{run.id}")
