"""`rebase rescore`: score a stored run's nodes with another PRM, into a named score set."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rebase_cli.cli.common import console, err_console, open_existing_db, print_json

Opt = typer.Option


def rescore(
    run: Annotated[str, typer.Argument(help="run-42, 42, a run name, or latest.")],
    reward: Annotated[str, Opt(help="URL of the reward server that scores.", show_default=False)],
    reward_protocol: Annotated[str, Opt(help="score, classify or pooling.")] = "score",
    reward_model: Annotated[
        str | None, Opt(help="Model name at the reward server (default: its only model).")
    ] = None,
    name: Annotated[
        str | None, Opt(help="Name of the score set (default: the reward model's id).")
    ] = None,
    template: Annotated[
        str | None, Opt(help="Template whose PRM format to use (default: the run's).")
    ] = None,
    concurrency: Annotated[int, Opt(min=1, max=10_000, help="Problems scored at once.")] = 8,
    reward_api_key: Annotated[
        str | None, Opt(envvar="REBASE_REWARD_API_KEY", help="Never stored.", show_default=False)
    ] = None,
    json_output: Annotated[bool, Opt("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Score every node of RUN with another PRM into a named score set (resumable: run it
    again to continue); `rebase report RUN --scores NAME` then selects answers with it."""
    from rebase_cli.runner import event_loop
    from rebase_cli.runner.rescore_service import rescore_with
    from rebase_cli.store.runs import resolve_run

    db = open_existing_db()
    out = err_console if json_output else console
    resolved = resolve_run(db, run)
    with Progress(
        TextColumn(f"rescoring run-{resolved.id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("problems", total=None)

        def advance() -> None:
            bar.advance(task)

        score_set, outcome = event_loop.run(
            rescore_with(
                db,
                resolved,
                url=reward,
                protocol=reward_protocol,
                model=reward_model,
                api_key=reward_api_key,
                name=name,
                template=template,
                concurrency=concurrency,
                on_start=lambda total: bar.update(task, total=total),
                on_problem=advance,
            )
        )
    summary = {
        "run": f"run-{resolved.id}",
        "score_set": score_set.name,
        "reward_model": score_set.reward_model,
        "problems": outcome.problems,
        "scored": outcome.scored,
        "already_scored": outcome.skipped,
    }
    if json_output:
        print_json(summary)
        return
    out.print(
        f"run-{resolved.id}: score set {score_set.name!r} ({score_set.reward_model}): "
        f"{outcome.scored:,} nodes scored now, {outcome.skipped:,} already scored",
        highlight=False,
    )
    out.print(f"report: rebase report run-{resolved.id} --scores {score_set.name}", highlight=False)
