"""`rebase search` as a service: resolve endpoints, connect clients, prepare and execute a run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from rebase_cli.clients.policy import PolicyClient
from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.clients.reward import make_reward_client
from rebase_cli.errors import ConfigError, UsageError
from rebase_cli.prompts import load_template
from rebase_cli.runner.config import SearchConfig, build_config, load_config_file
from rebase_cli.runner.context import DelimiterMonitor, SearchContext, SearchEvents
from rebase_cli.runner.runner import RunOutcome, execute_run
from rebase_cli.runner.setup import Endpoints, PreparedRun, RunRequest, prepare_run
from rebase_cli.search import get_strategy, make_params
from rebase_cli.store import repository as repo
from rebase_cli.store.database import Database

SIM = "sim"


@dataclass(frozen=True)
class EndpointRequest:
    """The user's --policy/--reward (a URL, `sim`, or None for a registered server)."""

    policy: str | None
    reward: str | None
    policy_api_key: str | None = None
    reward_api_key: str | None = None
    policy_model: str | None = None
    reward_model: str | None = None


def _registered_url(db: Database, role: str) -> str:
    from rebase_cli.serving.registry import healthy_server_url

    url = healthy_server_url(db, role)
    if url is None:
        raise UsageError(
            f"no {role} server given and none registered as healthy",
            f"pass --{role} URL, start one with `rebase serve {role}`, or use --{role} sim",
        )
    return url


@asynccontextmanager
async def _simulator(datasets: list[str], template: str) -> AsyncIterator[str]:
    """The simulator (policy and PRM) on a free port in a background thread of this process."""
    from rebase_cli.sim.config import SimConfig
    from rebase_cli.sim.inprocess import start_in_thread

    config = SimConfig(role="both", port=0, datasets=tuple(datasets), template=template)
    handle = await asyncio.to_thread(start_in_thread, config)
    try:
        yield handle.url
    finally:
        await asyncio.to_thread(handle.stop)


@asynccontextmanager
async def connected_clients(
    db: Database,
    request: EndpointRequest,
    config: SearchConfig,
    datasets: list[str],
) -> AsyncIterator[tuple[PolicyClient, object, Endpoints]]:
    """Policy and reward clients for the run, with the simulator started in-process when
    `--policy sim` / `--reward sim` was asked for, and the model ids resolved from the servers."""
    async with AsyncExitStack() as stack:
        sim_url = None
        if SIM in (request.policy, request.reward):
            sim_url = await stack.enter_async_context(_simulator(datasets, config.template))
        policy_url = (
            sim_url if request.policy == SIM else request.policy or _registered_url(db, "policy")
        )
        reward_url = (
            sim_url if request.reward == SIM else request.reward or _registered_url(db, "reward")
        )
        retry = RetryPolicy(
            max_attempts=config.max_retries + 1,
            timeout=config.request_timeout,
            max_total_wait=config.server_wait,
        )
        template = load_template(config.template)
        policy = PolicyClient(
            policy_url,
            model=request.policy_model,
            api_key=request.policy_api_key,
            retry=retry,
            max_in_flight=config.max_in_flight,
        )
        stack.push_async_callback(policy.aclose)
        reward = make_reward_client(
            config.reward_protocol,
            reward_url,
            model=request.reward_model,
            api_key=request.reward_api_key,
            retry=retry,
            max_in_flight=config.max_in_flight,
            prm=template.prm,
        )
        stack.push_async_callback(reward.aclose)
        endpoints = Endpoints(
            policy_url=policy_url,
            policy_model=await policy.model_id(),
            reward_url=reward_url,
            reward_model=await reward.model_id() or request.reward_model or "unknown",
        )
        yield policy, reward, endpoints


def preview_config(request: RunRequest) -> SearchConfig | None:
    """The config a new run would get (None when resuming a named run, whose config is stored)."""
    if request.run_ref is not None:
        return None
    file_values = load_config_file(request.config_file) if request.config_file else {}
    return build_config({**file_values, **request.overrides})


async def run_search(
    db: Database,
    run_request: RunRequest,
    endpoint_request: EndpointRequest,
    events_factory: Callable[[PreparedRun], SearchEvents],
    on_prepared: Callable[[PreparedRun, Endpoints], None] = lambda p, e: None,
) -> tuple[PreparedRun, RunOutcome]:
    """Resolve everything, then search. Errors before the run starts leave the database as is."""
    config = preview_config(run_request)
    if config is None:
        run = repo.resolve_run(db, run_request.run_ref or "")
        config = SearchConfig.model_validate_json(run.config_json)
        datasets = [run.dataset]
    else:
        datasets = [run_request.dataset] if run_request.dataset else []
    if not datasets:
        raise ConfigError("no dataset given", "pass --dataset gsm8k|math500|PATH")
    template = load_template(config.template)
    async with connected_clients(db, endpoint_request, config, datasets) as (
        policy,
        reward,
        endpoints,
    ):
        prepared = await asyncio.to_thread(prepare_run, db, run_request, endpoints)
        on_prepared(prepared, endpoints)
        cfg = prepared.config
        strategy = get_strategy(
            cfg.method,
            make_params(
                {
                    "width": cfg.budget,
                    "balance_temperature": cfg.balance_temperature,
                    "max_path_tokens": cfg.max_tokens,
                    "max_depth": cfg.max_depth,
                    "beam_expansion": cfg.beam_expansion,
                }
            ),
        )
        ctx = SearchContext(
            db=db,
            run_id=prepared.run.id,
            config=cfg,
            template=load_template(cfg.template) if cfg.template != template.name else template,
            strategy=strategy,
            policy=policy,
            reward=reward,
            events=events_factory(prepared),
            monitor=DelimiterMonitor(),
        )
        outcome = await execute_run(ctx)
        capabilities = getattr(policy, "capabilities", None)
        if capabilities:
            await asyncio.to_thread(repo.set_run_capabilities, db, prepared.run.id, capabilities)
        return prepared, outcome
