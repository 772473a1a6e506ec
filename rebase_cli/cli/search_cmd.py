"""`rebase search`: run REBASE (or a baseline) over a dataset, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from rebase_cli.cli.common import console, err_console, open_db, print_json, with_db
from rebase_cli.cli.config_flags import Flag, config_flags
from rebase_cli.errors import UsageError
from rebase_cli.runner.config import ENDPOINTS, OPERATION, OUTPUT, WHAT, ConfigFile

if TYPE_CHECKING:  # the run set-up pulls in the store (sqlalchemy), which `--help` need not pay for
    from rebase_cli.runner.setup import RunAlreadyDone, RunRequest


def Opt(*names: str, panel: str, help: str, **kw: Any) -> Any:
    """An option in a help panel; a `[...]` note in `help` is shown literally, not read as
    rich markup."""
    return typer.Option(*names, help=escape(help), rich_help_panel=panel, show_default=False, **kw)


def read_config_file(path: Path) -> ConfigFile:
    """The --config file, read once for the whole command; its notices (keys accepted but not
    used) are shown on stderr."""
    config_file = ConfigFile.read(path)
    for notice in config_file.notices:
        err_console.print(f"[yellow]notice[/]: {notice}", highlight=False)
    return config_file


@config_flags
def search(
    dataset: Annotated[
        str | None,
        Opt(panel=WHAT, help="gsm8k, math500, or a JSONL file. [required unless --run]"),
    ] = None,
    budget: Flag = None,
    method: Flag = None,
    limit: Flag = None,
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
    template: Flag = None,
    balance_temperature: Flag = None,
    temperature: Flag = None,
    top_p: Flag = None,
    max_step_tokens: Flag = None,
    max_tokens: Flag = None,
    max_depth: Flag = None,
    beam_expansion: Flag = None,
    particle_temperature: Flag = None,
    sample_mode: Flag = None,
    seed: Flag = None,
    samples_per_request: Flag = None,
    profile: Flag = None,
    select_method: Flag = None,
    truncate_ratio: Flag = None,
    tie_order: Flag = None,
    child_order: Flag = None,
    share_rounding: Flag = None,
    path_token_rule: Flag = None,
    leaf_rule: Flag = None,
    policy: Annotated[
        list[str] | None,
        Opt(
            panel=ENDPOINTS,
            help="Policy URL, `sim`, or `sim:FLAVOUR` (sglang, sglang-deterministic, vllm, "
            "openai); several servers: repeat it or separate with commas. [default: the run's "
            "own when resuming, else the server `rebase serve policy` registered]",
        ),
    ] = None,
    policy_server: Annotated[
        str | None,
        Opt(
            panel=ENDPOINTS,
            help="Policy server kind: sglang, sglang-deterministic, vllm or openai. "
            "[default: asked from the server]",
        ),
    ] = None,
    reward: Annotated[
        list[str] | None,
        Opt(
            panel=ENDPOINTS,
            help="Reward URL, or `sim`; several servers: repeat it or separate with commas "
            "(each problem stays on one; a dead one's problems move). [default: the run's "
            "own when resuming, else the server `rebase serve reward` registered]",
        ),
    ] = None,
    reward_protocol: Flag = None,
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
    concurrency: Flag = None,
    max_in_flight: Flag = None,
    request_timeout: Flag = None,
    server_wait: Flag = None,
    skip_check: Annotated[
        bool,
        Opt(
            "--skip-check",
            panel=OPERATION,
            help="Start a new run without probing the servers first (`rebase check`).",
        ),
    ] = False,
    name: Annotated[str | None, Opt(panel=OUTPUT, help="A name for the new run.")] = None,
    group: Annotated[
        str | None,
        Opt(panel=OUTPUT, help="Name of a sweep's run group; alone, finishes that sweep."),
    ] = None,
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
    *,
    overrides: dict[str, Any],
) -> None:
    """Run REBASE (or sample, beam, DVTS, particle filtering) over a dataset; every level is
    committed to SQLite.

    Ctrl-C, SIGTERM and SIGHUP stop it cleanly; the command it prints resumes it."""
    from rebase_cli.cli.sweep_cmd import run_sweep
    from rebase_cli.datasets import FieldMap
    from rebase_cli.runner.setup import RunRequest
    from rebase_cli.runner.sweep import SweepSpec, parse_list

    if resume and run is not None:
        raise UsageError("--resume and --run cannot be combined", "use one of them")
    # Several URLs of a role travel as one comma-separated value (the clients split it).
    policy_urls = ",".join(policy) if policy else None
    reward_urls = ",".join(reward) if reward else None
    budgets = parse_list(budget, "--budget", int) if budget is not None else [None]
    methods = parse_list(method, "--method") if method is not None else [None]
    # Imported here: the clients pull in openai, which other commands need not pay for.
    from rebase_cli.runner.service import EndpointRequest

    endpoints = EndpointRequest(
        policy=policy_urls,
        reward=reward_urls,
        policy_api_key=policy_api_key,
        reward_api_key=reward_api_key,
        policy_model=policy_model,
        reward_model=reward_model,
        policy_server=_server_kind(policy_server),
        check=not skip_check,
    )
    fields = (
        FieldMap(question=question_field, answer=answer_field)
        if question_field is not None or answer_field is not None
        else None
    )
    config_file = read_config_file(config) if config is not None else None
    if group is not None or len(budgets) > 1 or len(methods) > 1:
        if run is not None or name is not None:
            raise UsageError(
                "--run and --name name one run, not a sweep", "drop them; --group names a sweep"
            )
        spec = None
        if dataset is not None or budget is not None or method is not None or overrides or config:
            spec = SweepSpec(
                dataset=dataset or "",
                methods=methods,
                budgets=budgets,
                overrides=overrides,
                config_file=str(config) if config else None,
                question_field=question_field,
                answer_field=answer_field,
                policy=policy_urls,
                reward=reward_urls,
                policy_model=policy_model,
                reward_model=reward_model,
            )
        run_sweep(spec, group, resume, endpoints, json_output, config_file)
        return
    one = {"budget": budgets[0], "method": methods[0]}
    run_request = RunRequest(
        dataset=dataset,
        overrides={**overrides, **{k: v for k, v in one.items() if v is not None}},
        config_file=config_file,
        fields=fields,
        resume=resume,
        run_ref=run,
        name=name,
    )
    _search(run_request, endpoints, json_output)


def _search(run_request: RunRequest, endpoints, json_output: bool) -> None:  # type: ignore[no-untyped-def]
    from rebase_cli.cli.search_exec import execute_search
    from rebase_cli.runner.setup import RunAlreadyDone

    db = open_db()
    out = err_console if json_output else console
    try:
        prepared, outcome, summary, received = execute_search(db, run_request, endpoints, out)
    except RunAlreadyDone as done:
        _report_already_done(done, json_output)
        return
    if prepared is None:
        # Stopped by a signal before any run was prepared: nothing was written.
        err_console.print(f"stopped by {received.name} before the search started", highlight=False)
        raise typer.Exit(received.exit_code)
    _summarise(prepared.run.id, outcome, summary, out, json_output, received)


def _summarise(run_id, outcome, summary, out, json_output: bool, received) -> None:  # type: ignore[no-untyped-def]
    """After the summary line: the JSON form, then the next command (resume, report, retry)
    and the exit code."""
    from rebase_cli.cli.search_exec import exit_interrupted

    if json_output:
        print_json(summary)
    if outcome.interrupted:
        exit_interrupted(received, f"resume with: rebase search --run run-{run_id}")
    if not json_output:
        out.print(with_db(f"report: rebase report run-{run_id}"), highlight=False, soft_wrap=True)
    if summary["failed"]:
        err_console.print(
            with_db(
                f"{summary['failed']} problem(s) failed; retry them with: "
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


def _server_kind(given: str | None) -> str | None:
    """The --policy-server value, checked."""
    from rebase_cli.clients.server_kind import SERVER_KINDS

    if given is not None and given not in SERVER_KINDS:
        raise UsageError(
            f"unknown --policy-server {given!r}", f"use one of {', '.join(SERVER_KINDS)}"
        )
    return given
