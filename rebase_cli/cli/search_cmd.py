"""`rebase search`: run REBASE (or a baseline) over a dataset, resumable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rebase_cli.cli.common import console, err_console, open_db, print_json, with_db
from rebase_cli.cli.search_progress import ProgressEvents
from rebase_cli.datasets import FieldMap
from rebase_cli.errors import UsageError
from rebase_cli.runner.config import SearchConfig
from rebase_cli.runner.setup import RunAlreadyDone, RunRequest
from rebase_cli.store import repository as repo

# Help panels; options added later slot into one of these.
WHAT = "What to search"
PARAMS = "Search parameters"
ENDPOINTS = "Endpoints"
OPERATION = "Concurrency and timeouts"
OUTPUT = "Run and output"


def Opt(*names: str, panel: str, help: str, default: str | None = None, **kw: Any) -> Any:
    """An option in a help panel. `default` names the key of SearchConfig whose default is
    shown (the flag itself defaults to None, so that a config file's value can win); a
    `[...]` note in `help` is shown literally, not read as rich markup."""
    if default is not None:
        value = SearchConfig.model_fields[default].default
        help = f"{help} [default: {'all' if value is None else value}]"
    return typer.Option(*names, help=escape(help), rich_help_panel=panel, show_default=False, **kw)


def search(
    dataset: Annotated[
        str | None,
        Opt(panel=WHAT, help="gsm8k, math500, or a JSONL file. [required unless --run]"),
    ] = None,
    budget: Annotated[
        int | None,
        Opt(panel=WHAT, help="Width N: paths per problem. [required unless in --config/--run]"),
    ] = None,
    method: Annotated[
        str | None, Opt(panel=WHAT, help="rebase, sample or beam.", default="method")
    ] = None,
    limit: Annotated[
        int | None, Opt(panel=WHAT, help="Only the first K problems.", default="limit")
    ] = None,
    config: Annotated[
        Path | None, Opt(panel=WHAT, help="YAML config (reference-code keys work).")
    ] = None,
    question_field: Annotated[
        str | None,
        Opt(
            panel=WHAT,
            help="JSONL field of the question. "
            "[default: the first of question, problem, prompt, input]",
        ),
    ] = None,
    answer_field: Annotated[
        str | None,
        Opt(
            panel=WHAT,
            help="JSONL field of the answer. "
            "[default: the first of answer, final_answer, target, output]",
        ),
    ] = None,
    template: Annotated[
        str | None, Opt(panel=PARAMS, help="Prompt template name or YAML path.", default="template")
    ] = None,
    balance_temperature: Annotated[
        float | None,
        Opt(panel=PARAMS, help="REBASE softmax temperature.", default="balance_temperature"),
    ] = None,
    temperature: Annotated[
        float | None, Opt(panel=PARAMS, help="Policy sampling temperature.", default="temperature")
    ] = None,
    top_p: Annotated[
        float | None, Opt(panel=PARAMS, help="Policy nucleus sampling.", default="top_p")
    ] = None,
    max_step_tokens: Annotated[
        int | None, Opt(panel=PARAMS, help="Max tokens per step.", default="max_step_tokens")
    ] = None,
    max_tokens: Annotated[
        int | None, Opt(panel=PARAMS, help="Max tokens per path.", default="max_tokens")
    ] = None,
    max_depth: Annotated[
        int | None, Opt(panel=PARAMS, help="Max steps per path.", default="max_depth")
    ] = None,
    beam_expansion: Annotated[
        int | None, Opt(panel=PARAMS, help="Beam search expansion M.", default="beam_expansion")
    ] = None,
    seed: Annotated[
        int | None, Opt(panel=PARAMS, help="Run seed (child seeds derive from it).", default="seed")
    ] = None,
    samples_per_request: Annotated[
        int | None,
        Opt(
            panel=PARAMS,
            help="Cap on n per policy request (1: one request, one seed per child). "
            "[default: all children of a node in one request]",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        Opt(
            panel=ENDPOINTS,
            help="Policy URL, or `sim`. [default: the run's own when resuming, else the "
            "server `rebase serve policy` registered]",
        ),
    ] = None,
    reward: Annotated[
        str | None,
        Opt(
            panel=ENDPOINTS,
            help="Reward URL, or `sim`. [default: the run's own when resuming, else the "
            "server `rebase serve reward` registered]",
        ),
    ] = None,
    reward_protocol: Annotated[
        str | None,
        Opt(panel=ENDPOINTS, help="score, classify or pooling.", default="reward_protocol"),
    ] = None,
    policy_model: Annotated[
        str | None,
        Opt(panel=ENDPOINTS, help="Model name at the policy server. [default: the one it serves]"),
    ] = None,
    reward_model: Annotated[
        str | None,
        Opt(panel=ENDPOINTS, help="Model name at the reward server. [default: the one it serves]"),
    ] = None,
    policy_api_key: Annotated[
        str | None, Opt(panel=ENDPOINTS, help="Never stored.", envvar="REBASE_POLICY_API_KEY")
    ] = None,
    reward_api_key: Annotated[
        str | None, Opt(panel=ENDPOINTS, help="Never stored.", envvar="REBASE_REWARD_API_KEY")
    ] = None,
    concurrency: Annotated[
        int | None, Opt(panel=OPERATION, help="Problems searched at once.", default="concurrency")
    ] = None,
    max_in_flight: Annotated[
        int | None,
        Opt(panel=OPERATION, help="In-flight requests per endpoint.", default="max_in_flight"),
    ] = None,
    request_timeout: Annotated[
        float | None, Opt(panel=OPERATION, help="Seconds per request.", default="request_timeout")
    ] = None,
    server_wait: Annotated[
        float | None,
        Opt(panel=OPERATION, help="Seconds to wait for a down server.", default="server_wait"),
    ] = None,
    name: Annotated[str | None, Opt(panel=OUTPUT, help="A name for the new run.")] = None,
    resume: Annotated[
        bool,
        Opt(
            "--resume",
            panel=OUTPUT,
            help="Continue the latest unfinished run with this config.",
        ),
    ] = False,
    run: Annotated[
        str | None, Opt("--run", panel=OUTPUT, help="Resume this run (run-42, 42, a name).")
    ] = None,
    json_output: Annotated[
        bool, Opt("--json", panel=OUTPUT, help="Print the summary as JSON.")
    ] = False,
) -> None:
    """Run REBASE (or `sample` / `beam`) over a dataset; every level is committed to SQLite.

    Ctrl-C, SIGTERM and SIGHUP stop it cleanly; the command it prints resumes it."""
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
        "request_timeout": request_timeout,
        "server_wait": server_wait,
        "max_in_flight": max_in_flight,
        "samples_per_request": samples_per_request,
    }
    run_request = RunRequest(
        dataset=dataset,
        overrides={k: v for k, v in explicit.items() if v is not None},
        config_file=config,
        fields=FieldMap(question=question_field, answer=answer_field)
        if question_field is not None or answer_field is not None
        else None,
        resume=resume,
        run_ref=run,
        name=name,
    )
    _search(run_request, policy, reward, policy_api_key, reward_api_key, policy_model,
            reward_model, json_output)  # fmt: skip


def _search(
    run_request: RunRequest,
    policy: str | None,
    reward: str | None,
    policy_api_key: str | None,
    reward_api_key: str | None,
    policy_model: str | None,
    reward_model: str | None,
    json_output: bool,
) -> None:
    # Imported here: the clients pull in openai, which other commands need not pay for.
    from rebase_cli.runner.service import EndpointRequest, run_search
    from rebase_cli.runner.signals import cancel_on_signals

    endpoints = EndpointRequest(
        policy=policy,
        reward=reward,
        policy_api_key=policy_api_key,
        reward_api_key=reward_api_key,
        policy_model=policy_model,
        reward_model=reward_model,
    )
    db = open_db()
    out = err_console if json_output else console
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
        totals = repo.run_totals(db, prepared.run.id)
        events = ProgressEvents(out, f"run-{prepared.run.id}", run_total=totals["problems"])
        holder["events"] = events.__enter__()
        return holder["events"]

    async def main():  # type: ignore[no-untyped-def]
        with cancel_on_signals() as received:
            try:
                return await run_search(db, run_request, endpoints, events, on_prepared), received
            except asyncio.CancelledError:
                if received.signum is None:
                    raise
                return None, received

    try:
        result, received = asyncio.run(main())
    except RunAlreadyDone as done:
        _report_already_done(done, json_output)
        return
    finally:
        if "events" in holder:
            holder["events"].__exit__(None, None, None)
    if result is None:
        # Stopped by a signal before any run was prepared: nothing was written.
        err_console.print(f"stopped by {received.name} before the search started", highlight=False)
        raise typer.Exit(received.exit_code)
    prepared, outcome = result
    _summarise(prepared.run.id, outcome, db, out, json_output, received)


def _summarise(run_id, outcome, db, out, json_output: bool, received) -> None:  # type: ignore[no-untyped-def]
    totals = repo.run_totals(db, run_id)
    summary = {"run": f"run-{run_id}", "interrupted": outcome.interrupted, **totals,
               "wall_seconds": round(outcome.wall_seconds, 2)}  # fmt: skip
    if json_output:
        print_json(summary)
    else:
        out.print(
            f"run-{run_id}: {totals['done']}/{totals['problems']} problems done, "
            f"{totals['failed']} failed, {totals['nodes']:,} nodes, "
            f"{totals['policy_prompt_tokens'] + totals['policy_completion_tokens']:,} policy "
            f"tokens, {totals['reward_tokens']:,} reward tokens in {outcome.wall_seconds:.1f}s"
        )
        for index, error in outcome.failures[:10]:
            out.print(f"  [red]problem {index} failed[/]: {error}")
    if outcome.interrupted:
        by = f" by {received.name}" if received.signum else ""
        err_console.print(
            with_db(f"interrupted{by}; resume with: rebase search --run run-{run_id}"),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(received.exit_code)
    if not json_output:
        out.print(with_db(f"report: rebase report run-{run_id}"), highlight=False, soft_wrap=True)
    if totals["failed"]:
        err_console.print(
            with_db(
                f"{totals['failed']} problem(s) failed; retry them with: "
                f"rebase search --run run-{run_id}"
            ),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _report_already_done(done: RunAlreadyDone, json_output: bool) -> None:
    """A finished run is not searched again: say so and point at its report."""
    run_ref = f"run-{done.run.id}"
    if json_output:
        print_json({"run": run_ref, "already_done": True, "problems": done.problems})
    how = (
        f"--resume found {run_ref}, which finished this config"
        if done.by_resume
        else f"{run_ref} is already done"
    )
    err_console.print(
        with_db(
            f"{how} ({done.problems}/{done.problems} problems); nothing to resume. "
            f"See its results with: rebase report {run_ref}. A larger --limit extends it; "
            "to search the same config again as a new run, drop "
            + ("--resume" if done.by_resume else f"--run {run_ref} and give --dataset/--budget")
        ),
        highlight=False,
        soft_wrap=True,
    )
