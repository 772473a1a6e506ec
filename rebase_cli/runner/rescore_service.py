"""`rebase rescore` as a service: connect the reward client the run's config asks for, open
(or continue) the score set, and score."""

from __future__ import annotations

from collections.abc import Callable

from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.clients.reward import make_reward_client
from rebase_cli.prompts import load_template
from rebase_cli.runner.config import SearchConfig
from rebase_cli.runner.rescore import RescoreOutcome, rescore_run
from rebase_cli.store import score_sets
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run, ScoreSet
from rebase_cli.store.problems import problems_of_run


async def rescore_with(
    db: Database,
    run: Run,
    *,
    url: str,
    protocol: str,
    model: str | None,
    api_key: str | None,
    name: str | None,
    template: str | None,
    concurrency: int,
    on_start: Callable[[int], None] = lambda total: None,
    on_problem: Callable[[], None] = lambda: None,
) -> tuple[ScoreSet, RescoreOutcome]:
    """Score `run` with the reward server at `url` (same retry rules as the search: the
    run's request timeout, retries and server wait)."""
    config = SearchConfig.model_validate_json(run.config_json)
    retry = RetryPolicy(
        max_attempts=config.max_retries + 1,
        timeout=config.request_timeout,
        max_total_wait=config.server_wait,
    )
    prm = load_template(template or config.template).prm
    reward = make_reward_client(
        protocol, url, model=model, api_key=api_key, retry=retry, prm=prm,
        max_in_flight=config.max_in_flight,
    )  # fmt: skip
    try:
        model_id = await reward.model_id() or model
        score_set = score_sets.open_score_set(
            db, run.id or 0, name or model_id or "rescore", url, model_id, protocol
        )
        on_start(len(problems_of_run(db, run.id or 0)))
        outcome = await rescore_run(
            db, run.id or 0, score_set.id or 0, reward, concurrency, on_problem
        )
    finally:
        await reward.aclose()
    return score_sets.get_score_set(db, run.id or 0, score_set.name), outcome
