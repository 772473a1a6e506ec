"""`rebase runs`, `rebase runs show RUN`, `rebase runs delete RUN`."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from rebase_cli.cli.check_table import findings_table
from rebase_cli.cli.common import console, open_existing_db, print_json
from rebase_cli.runner import reproducibility

if TYPE_CHECKING:  # the store pulls in sqlalchemy: not for `--help`
    from rebase_cli.records import RunListing

app = typer.Typer(help="List, inspect and delete runs.", invoke_without_command=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.callback()
def list_runs(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List runs: id, name, method, dataset, budget, status, progress, created."""
    if ctx.invoked_subcommand is not None:
        return
    from rebase_cli.store.reader import RunReader

    listings = RunReader(open_existing_db()).runs()
    if json_output:
        print_json([_listing_json(listing) for listing in listings])
        return
    # Ids, names and dates never wrap or get cut: at 80 columns the dataset column (a path,
    # perhaps) folds instead.
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    # `N` is the budget (the paper's width N): a short header keeps the row within 80 columns.
    grouped = any(listing.run.group_name for listing in listings)
    headers = ("run", "name", *(("group",) if grouped else ()), "method", "status", "N")
    for header in (*headers, "progress", "created"):
        table.add_column(header, no_wrap=True)
    table.add_column("dataset", overflow="fold", min_width=10)
    for listing in listings:
        run, counts = listing.run, listing.problems
        total = sum(counts.values())
        done = counts.get("done", 0)
        failed = counts.get("failed", 0)
        progress = f"{done}/{total}" + (f" ({failed} failed)" if failed else "")
        table.add_row(
            f"run-{run.id}",
            run.name or "",
            *((run.group_name or "",) if grouped else ()),
            run.method + (" [yellow]sim[/]" if run.simulated else ""),
            run.status,
            str(run.budget),
            progress,
            run.created_at.strftime("%Y-%m-%d %H:%M"),
            run.dataset,
        )
    console.print(table)


def _listing_json(listing: RunListing) -> dict:
    run = listing.run
    return {
        "run": f"run-{run.id}",
        "name": run.name,
        "method": run.method,
        "dataset": run.dataset,
        "budget": run.budget,
        "status": run.status,
        "simulated": run.simulated,
        "group": run.group_name,
        "problems": dict(listing.problems),
        "created_at": run.created_at.isoformat(),
    }


@app.command("show")
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run-42, 42, a name or latest.")],
    json_output: JsonFlag = False,
) -> None:
    """Show one run: config, endpoints, status and totals."""
    from rebase_cli.store.reader import RunReader

    reader = RunReader(open_existing_db())
    run = reader.resolve(run_ref)
    totals = asdict(reader.totals(run.id))
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
        "group": run.group_name,
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
        "score_sets": {
            s.name: {"reward_model": s.reward_model, "status": s.status}
            for s in reader.score_sets(run.id)
        },
    }
    if json_output:
        print_json(payload)
        return
    capabilities = dict(payload["capabilities"] or {})
    check = capabilities.pop("check", None)
    payload["capabilities"] = capabilities or None
    # Times to the second, in UTC (the JSON keeps the full ISO value).
    payload["created_at"] = run.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    payload["updated_at"] = run.updated_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    table = Table(show_header=False, box=None)
    for key, value in payload.items():
        table.add_row(key, _shown(key, value))
    console.print(table)
    if isinstance(check, dict):
        console.print(
            findings_table(check.get("findings", []), title="server check before the run")
        )


def _shown(key: str, value: object) -> str:
    """A value as a person reads it: no Python `None`, rounded seconds, `k=v` lists."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}s" if key.endswith("seconds") else f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(k, v)}" for k, v in value.items())
    return str(value)


@app.command("delete")
def delete(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="run-42, 42, a name or latest.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Delete a run with all its problems, nodes and allocations."""
    from rebase_cli.runner.holder import refuse_if_searched
    from rebase_cli.store.runs import delete_run, resolve_run

    db = open_existing_db()
    run = resolve_run(db, run_ref)
    assert run.id is not None
    refuse_if_searched(db, run.id, "delete")
    if not yes and not typer.confirm(f"Delete run-{run.id} and its whole tree?"):
        raise typer.Exit(1)
    # Deleting under a live search would make it die with a false "taken over" error.
    refuse_if_searched(db, run.id, "delete")
    delete_run(db, run.id)
    typer.echo(f"deleted run-{run.id}")
