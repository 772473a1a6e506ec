"""`rebase check`: probe the policy and reward servers before a long run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rebase_cli.cli.check_table import findings_table
from rebase_cli.cli.common import console, err_console, open_db, print_json
from rebase_cli.cli.config_flags import Flag, config_flags

Opt = typer.Option

# The config keys a check takes: those that change what the probes send or how long they wait.
CHECKED_KEYS = (
    "template",
    "reward_protocol",
    "temperature",
    "top_p",
    "seed",
    "max_step_tokens",
    "max_tokens",
    "max_depth",
    "request_timeout",
    "server_wait",
)


@config_flags(fields=CHECKED_KEYS)
def check(
    dataset: Annotated[str | None, Opt(help="gsm8k, math500, or a JSONL file.")] = None,
    config: Annotated[Path | None, Opt(help="YAML config, as for `rebase search`.")] = None,
    template: Flag = None,
    policy: Annotated[str | None, Opt(help="Policy URL, or `sim` (default: registered).")] = None,
    reward: Annotated[str | None, Opt(help="Reward URL, or `sim` (default: registered).")] = None,
    reward_protocol: Flag = None,
    policy_model: Annotated[str | None, Opt(help="Model name at the policy server.")] = None,
    reward_model: Annotated[str | None, Opt(help="Model name at the reward server.")] = None,
    policy_api_key: Annotated[
        str | None, Opt(envvar="REBASE_POLICY_API_KEY", help="Never stored.", show_default=False)
    ] = None,
    reward_api_key: Annotated[
        str | None, Opt(envvar="REBASE_REWARD_API_KEY", help="Never stored.", show_default=False)
    ] = None,
    temperature: Flag = None,
    top_p: Flag = None,
    seed: Flag = None,
    max_step_tokens: Flag = None,
    max_tokens: Flag = None,
    max_depth: Flag = None,
    request_timeout: Flag = None,
    server_wait: Flag = None,
    question_field: Annotated[str | None, Opt(help="JSONL field of the question.")] = None,
    answer_field: Annotated[str | None, Opt(help="JSONL field of the answer.")] = None,
    quick: Annotated[
        bool,
        Opt("--quick", help="Only the cheap probes `rebase search` runs (no rollouts)."),
    ] = False,
    json_output: Annotated[bool, Opt("--json", help="Print the findings as JSON.")] = False,
    *,
    overrides: dict[str, Any],
) -> None:
    """Probe the servers a search with these options would use, and exit 1 on a blocker.

    Checks the server kinds and versions; that n, seeds and stop reporting are honoured; on two
    dataset questions, that the policy ends steps at the template's delimiter and gives an answer
    the template can read within the limits; that the template's label tokens are single,
    distinct tokens of the reward model; and that the PRM scores a correct and a wrong step
    differently."""
    from rebase_cli.cli.search_cmd import read_config_file
    from rebase_cli.datasets import FieldMap
    from rebase_cli.runner import event_loop
    from rebase_cli.runner.check_service import check_servers
    from rebase_cli.runner.service import EndpointRequest
    from rebase_cli.runner.setup import RunRequest

    run_request = RunRequest(
        dataset=dataset,
        overrides=overrides,
        config_file=read_config_file(config) if config is not None else None,
        fields=FieldMap(question=question_field, answer=answer_field)
        if question_field or answer_field
        else None,
    )
    endpoints = EndpointRequest(
        policy=policy,
        reward=reward,
        policy_api_key=policy_api_key,
        reward_api_key=reward_api_key,
        policy_model=policy_model,
        reward_model=reward_model,
    )
    db = open_db()
    with err_console.status("probing the servers..."):
        report = event_loop.run(check_servers(db, run_request, endpoints, full=not quick))
    if json_output:
        print_json(report.as_dict())
    else:
        console.print(
            f"policy {report.policy_url}, reward {report.reward_url} ({report.reward_protocol}), "
            f"template {report.template}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(findings_table(f.__dict__ for f in report.findings))
    if report.blockers:
        names = ", ".join(f.check for f in report.blockers)
        err_console.print(f"[bold red]blocked[/]: {names}", highlight=False)
        raise typer.Exit(1)
