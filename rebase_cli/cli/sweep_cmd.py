"""`rebase search` with lists of budgets or methods: a sweep, run by run, as one group."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rebase_cli.cli.common import console, err_console, open_db, print_json, with_db
from rebase_cli.cli.search_cmd import read_config_file
from rebase_cli.cli.search_exec import execute_search, exit_interrupted
from rebase_cli.errors import UsageError
from rebase_cli.runner.config import ConfigFile
from rebase_cli.runner.setup import RunAlreadyDone
from rebase_cli.runner.sweep import SweepSpec
from rebase_cli.store import groups
from rebase_cli.store.database import Database

if TYPE_CHECKING:  # the service pulls in the clients (openai)
    from rebase_cli.runner.service import EndpointRequest


def run_sweep(
    spec: SweepSpec | None,
    group: str | None,
    resume: bool,
    endpoints: EndpointRequest,
    json_output: bool,
    config_file: ConfigFile | None = None,
) -> None:
    """Run (or finish) the sweep `spec` in group `group`; with no spec, the stored plan of
    `group`. `config_file` is the spec's config file as the command read it (a stored plan's
    is read here). Exit 130 when interrupted, 1 when problems failed."""
    if spec is not None:
        # A bad value in any run is refused before the group is stored or a run starts.
        for _, _, request in spec.run_requests(group or "", config_file):
            request.new_config()
    db = open_db()
    out = err_console if json_output else console
    stored_plan = spec is None
    name, spec = _group_and_plan(db, spec, group, resume)
    if stored_plan and spec.config_file is not None:
        config_file = read_config_file(Path(spec.config_file))
    if spec.policy is not None or spec.reward is not None:
        # The stored endpoints, unless given again now (API keys always come from now).
        endpoints = replace(
            endpoints,
            policy=endpoints.policy or spec.policy,
            reward=endpoints.reward or spec.reward,
            policy_model=endpoints.policy_model or spec.policy_model,
            reward_model=endpoints.reward_model or spec.reward_model,
        )
    combos = spec.combinations()
    out.print(f"[bold]group {name}[/]: {len(combos)} runs ({_describe(combos)})", highlight=False)
    summaries, failed = [], 0
    for position, (_, _, request) in enumerate(spec.run_requests(name, config_file), start=1):
        out.print(f"[bold]\\[{position}/{len(combos)}][/]", end=" ")
        try:
            prepared, outcome, summary, received = execute_search(db, request, endpoints, out)
        except RunAlreadyDone as done:
            summaries.append({"run": f"run-{done.run.id}", "already_done": True})
            continue
        if prepared is not None:
            summaries.append(summary)
            failed += summary["failed"]
        if prepared is None or outcome.interrupted:
            _print(json_output, name, summaries)
            exit_interrupted(received, f"resume the sweep with: rebase search --group {name}")
    _print(json_output, name, summaries)
    if not json_output:
        out.print(with_db(f"report: rebase report {name}"), highlight=False, soft_wrap=True)
    if failed:
        err_console.print(
            with_db(f"{failed} problem(s) failed; retry them with: rebase search --group {name}"),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _group_and_plan(
    db: Database, spec: SweepSpec | None, group: str | None, resume: bool
) -> tuple[str, SweepSpec]:
    if spec is None:
        stored = groups.get_group(db, group or "")
        if stored is None:
            raise UsageError(
                f"no group {group!r}",
                "start a sweep with --dataset D --budget 4,8,16 --group NAME, "
                "or list groups with `rebase runs`",
            )
        return stored.name, SweepSpec.from_json(json.loads(stored.spec_json))
    if not spec.dataset:
        raise UsageError("a sweep needs --dataset", "pass --dataset gsm8k|math500|PATH")
    if group is None and resume:
        # The newest group started with this very plan.
        same = [g for g in groups.list_groups(db) if json.loads(g.spec_json) == spec.to_json()]
        if same:
            group = same[-1].name
    if group is None:
        taken = {g.name for g in groups.list_groups(db)}
        number = len(taken) + 1
        while f"sweep-{number}" in taken:
            number += 1
        group = f"sweep-{number}"
    groups.save_group(db, group, spec.to_json())
    return group, spec


def _describe(combos: list[tuple[str | None, int | None]]) -> str:
    return ", ".join(
        " ".join(part for part in (m, f"N={b}" if b is not None else None) if part)
        or "default config"
        for m, b in combos
    )


def _print(json_output: bool, name: str, summaries: list[dict]) -> None:
    if json_output:
        print_json({"group": name, "runs": summaries})
