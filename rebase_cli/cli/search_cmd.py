"""`rebase search`: run REBASE (or a baseline) over a dataset, resumable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from rebase_cli.cli.common import console, err_console, open_db, print_json
from rebase_cli.cli.search_progress import ProgressEvents
from rebase_cli.datasets import FieldMap
from rebase_cli.errors import UsageError
from rebase_cli.reports.servers import server_rows
from rebase_cli.runner import reproducibility
from rebase_cli.runner.config import load_config_file
from rebase_cli.runner.setup import RunRequest
from rebase_cli.store import repository as repo

Opt = typer.Option


def search(
    dataset: Annotated[str | None, Opt(help="gsm8k, math500, or a JSONL file.")] = None,
    budget: Annotated[int | None, Opt(help="Width N: paths per problem.")] = None,
    method: Annotated[
        str | None, Opt(help="rebase, sample, beam, dvts or particle (default rebase).")
    ] = None,
    config: Annotated[Path | None, Opt(help="YAML config (reference-code keys work).")] = None,
    template: Annotated[str | None, Opt(help="Prompt template name or YAML path.")] = None,
    policy: Annotated[
        list[str] | None,
        Opt(
            help="Policy URL, `sim`, or `sim:FLAVOUR` (sglang, vllm, ...). Several servers: "
            "repeat it or separate with commas.",
            show_default=False,
        ),
    ] = None,
    reward: Annotated[
        list[str] | None,
        Opt(
            help="Reward URL, or `sim`. Several servers: repeat it or separate with commas "
            "(each problem stays on one; a dead one's problems move).",
            show_default=False,
        ),
    ] = None,
    policy_server: Annotated[
        str | None,
        Opt(
            help="Policy server kind: sglang, sglang-deterministic, vllm or openai "
            "[default: asked from the server]",
            show_default=False,
        ),
    ] = None,
    reward_protocol: Annotated[str | None, Opt(help="score, classify or pooling.")] = None,
    limit: Annotated[int | None, Opt(help="Only the first K problems.")] = None,
    concurrency: Annotated[int | None, Opt(help="Problems searched at once.")] = None,
    seed: Annotated[int | None, Opt(help="Run seed (child seeds derive from it).")] = None,
    name: Annotated[str | None, Opt(help="A name for the new run.")] = None,
    resume: Annotated[
        bool, Opt("--resume", help="Continue the latest unfinished run with this config.")
    ] = False,
    run: Annotated[str | None, Opt("--run", help="Resume this run (run-42, 42, a name).")] = None,
    balance_temperature: Annotated[float | None, Opt(help="REBASE softmax temperature.")] = None,
    temperature: Annotated[float | None, Opt(help="Policy sampling temperature.")] = None,
    top_p: Annotated[float | None, Opt(help="Policy nucleus sampling.")] = None,
    max_step_tokens: Annotated[int | None, Opt(help="Max tokens per step.")] = None,
    max_tokens: Annotated[int | None, Opt(help="Max tokens per path.")] = None,
    max_depth: Annotated[int | None, Opt(help="Max steps per path.")] = None,
    beam_expansion: Annotated[int | None, Opt(help="Beam and DVTS expansion M.")] = None,
    particle_temperature: Annotated[
        float | None, Opt(help="Particle filtering resampling temperature (default 0.2).")
    ] = None,
    sample_mode: Annotated[
        str | None,
        Opt(
            help="sample: `steps` (scored as it grows) or `whole` (one request per path) "
            "(default steps)."
        ),
    ] = None,
    request_timeout: Annotated[float | None, Opt(help="Seconds per request.")] = None,
    server_wait: Annotated[float | None, Opt(help="Seconds to wait for a down server.")] = None,
    max_in_flight: Annotated[int | None, Opt(help="In-flight requests per endpoint.")] = None,
    samples_per_request: Annotated[
        int | None, Opt(help="Cap on n per policy request (1: one request, one seed per child).")
    ] = None,
    policy_model: Annotated[str | None, Opt(help="Model name at the policy server.")] = None,
    reward_model: Annotated[str | None, Opt(help="Model name at the reward server.")] = None,
    policy_api_key: Annotated[
        str | None, Opt(envvar="REBASE_POLICY_API_KEY", help="Never stored.", show_default=False)
    ] = None,
    reward_api_key: Annotated[
        str | None, Opt(envvar="REBASE_REWARD_API_KEY", help="Never stored.", show_default=False)
    ] = None,
    question_field: Annotated[str | None, Opt(help="JSONL field of the question.")] = None,
    answer_field: Annotated[str | None, Opt(help="JSONL field of the answer.")] = None,
    profile: Annotated[
        str | None,
        Opt(help="default, or reference: the authors' rebase.py exactly. (default: default)"),
    ] = None,
    select_method: Annotated[
        str | None, Opt(help="softmax or softmax_with_truncate. (default: softmax)")
    ] = None,
    truncate_ratio: Annotated[
        float | None, Opt(help="softmax_with_truncate keeps the best ceil(open x ratio).")
    ] = None,
    tie_order: Annotated[
        str | None,
        Opt(
            help="Equal scores: earlier-first or later-first. "
            "(default: earlier-first; reference: later-first)"
        ),
    ] = None,
    child_order: Annotated[
        str | None,
        Opt(
            help="Children made in parent-order or best-first. "
            "(default: parent-order; reference: best-first)"
        ),
    ] = None,
    share_rounding: Annotated[
        str | None,
        Opt(help="sequential-ceil (code) or round (paper). (default: sequential-ceil)"),
    ] = None,
    path_token_rule: Annotated[
        str | None,
        Opt(help="max-tokens counts the path or the step. (default: path; reference: step)"),
    ] = None,
    leaf_rule: Annotated[
        str | None,
        Opt(
            help="Path ends: template (answer, EOS) or answer-phrase. "
            "(default: template; reference: answer-phrase)"
        ),
    ] = None,
    json_output: Annotated[bool, Opt("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Run REBASE (or `sample` / `beam`) over a dataset; every level is committed to SQLite."""
    # Imported here: the clients pull in openai, which other commands need not pay for.
    from rebase_cli.runner.service import EndpointRequest, run_search

    if resume and run is not None:
        raise UsageError("--resume and --run cannot be combined", "use one of them")
    explicit: dict[str, Any] = {
        "budget": budget,
        "method": method,
        "template": template,
        "reward_protocol": reward_protocol,
        "limit": limit,
        "concurrency": concurrency,
        "seed": seed,
        "balance_temperature": balance_temperature,
        "temperature": temperature,
        "top_p": top_p,
        "max_step_tokens": max_step_tokens,
        "max_tokens": max_tokens,
        "max_depth": max_depth,
        "beam_expansion": beam_expansion,
        "particle_temperature": particle_temperature,
        "sample_mode": sample_mode,
        "request_timeout": request_timeout,
        "server_wait": server_wait,
        "max_in_flight": max_in_flight,
        "samples_per_request": samples_per_request,
        "profile": profile,
        "select_method": select_method,
        "truncate_ratio": truncate_ratio,
        "tie_order": tie_order,
        "child_order": child_order,
        "share_rounding": share_rounding,
        "path_token_rule": path_token_rule,
        "leaf_rule": leaf_rule,
    }
    run_request = RunRequest(
        dataset=dataset,
        overrides={k: v for k, v in explicit.items() if v is not None},
        config_file=config,
        fields=FieldMap(question=question_field, answer=answer_field)
        if question_field or answer_field
        else None,
        resume=resume,
        run_ref=run,
        name=name,
    )
    endpoints = EndpointRequest(
        policy=",".join(policy) if policy else None,
        reward=",".join(reward) if reward else None,
        policy_api_key=policy_api_key,
        reward_api_key=reward_api_key,
        policy_model=policy_model,
        reward_model=reward_model,
        policy_server=_server_kind(policy_server),
    )
    db = open_db()
    out = err_console if json_output else console
    if config is not None:
        notices: list[str] = []
        load_config_file(config, notices)
        for notice in notices:
            err_console.print(f"[yellow]notice[/]: {notice}", highlight=False)
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
    servers = server_rows(repo.resolve_run(db, str(prepared.run.id)))
    if servers:
        summary["servers"] = servers
    if json_output:
        print_json(summary)
    else:
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
    if outcome.interrupted:
        err_console.print(
            f"interrupted; resume with: rebase search --run run-{prepared.run.id}", highlight=False
        )
        raise typer.Exit(130)
    if not json_output:
        out.print(f"report: rebase report run-{prepared.run.id}")
    if totals["failed"]:
        err_console.print(
            f"{totals['failed']} problem(s) failed; retry them with: "
            f"rebase search --run run-{prepared.run.id}",
            highlight=False,
        )
        raise typer.Exit(1)


def _server_kind(given: str | None) -> str | None:
    """The --policy-server value, checked."""
    from rebase_cli.clients.server_kind import SERVER_KINDS

    if given is not None and given not in SERVER_KINDS:
        raise UsageError(
            f"unknown --policy-server {given!r}", f"use one of {', '.join(SERVER_KINDS)}"
        )
    return given
