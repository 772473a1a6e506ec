"""`rebase search` as a service: resolve endpoints, connect clients, prepare and execute a run."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace

from rebase_cli.checking.findings import CheckReport
from rebase_cli.checking.service import run_checks
from rebase_cli.clients.path_reward import PathScorer
from rebase_cli.clients.policy import PolicyClient
from rebase_cli.clients.pool import server_figures
from rebase_cli.clients.retry import RetryPolicy
from rebase_cli.clients.reward import HttpReward, make_reward_client
from rebase_cli.datasets import load_dataset
from rebase_cli.domain import Dataset
from rebase_cli.errors import ConfigError, RunLockedError, UsageError
from rebase_cli.prompts import load_template
from rebase_cli.runner import reproducibility
from rebase_cli.runner.config import SearchConfig
from rebase_cli.runner.context import DelimiterMonitor, SearchContext, SearchEvents
from rebase_cli.runner.holder import lease_owner, refuse_if_searched
from rebase_cli.runner.runner import RunOutcome, execute_run, lease_ttl
from rebase_cli.runner.setup import (
    Endpoints,
    PreparedRun,
    RunRequest,
    continued_config,
    prepare_run,
    run_to_continue,
)
from rebase_cli.runner.signals import finish_despite_cancel
from rebase_cli.search import get_strategy
from rebase_cli.search.base import Strategy
from rebase_cli.serving.registry import healthy_server
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.flavours import DEFAULT_FLAVOUR, FLAVOURS
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run
from rebase_cli.store.runs import resolve_run, set_run_capabilities
from rebase_cli.store.sqlite_store import SqliteSearchStore
from rebase_cli.url_lists import split_urls

SIM = "sim"
SIM_PREFIX = "sim:"  # `sim:FLAVOUR` picks the real server the simulator imitates
SIM_POLICY_MODEL = SimConfig.policy_model
SIM_REWARD_MODEL = SimConfig.reward_model


@dataclass(frozen=True)
class EndpointRequest:
    """The user's --policy/--reward (a URL, `sim`, or None for a registered server)."""

    policy: str | None
    reward: str | None
    policy_api_key: str | None = None
    reward_api_key: str | None = None
    policy_model: str | None = None
    reward_model: str | None = None
    policy_server: str | None = None  # the policy server's kind; None: ask the server
    # Probe the servers (the cheap part of `rebase check`) before a new run, refusing blockers.
    check: bool = True

    def sim_flavour(self) -> str | None:
        """The simulator flavour asked for (`sim` or `sim:FLAVOUR` on either endpoint), or
        None when neither endpoint is the simulator. Both endpoints share one simulator."""
        flavours = set()
        for given in (self.policy, self.reward):
            if given == SIM:
                flavours.add(None)
            elif given is not None and given.startswith(SIM_PREFIX):
                flavour = given[len(SIM_PREFIX) :]
                if flavour not in FLAVOURS:
                    raise UsageError(
                        f"unknown simulator flavour {flavour!r} in {given!r}",
                        f"use sim or sim:FLAVOUR with one of {', '.join(FLAVOURS)}",
                    )
                flavours.add(flavour)
        if not flavours:
            return None
        named = flavours - {None}
        if len(named) > 1:
            raise UsageError(
                "--policy and --reward name different simulator flavours",
                "one simulator serves both; name the flavour once",
            )
        return next(iter(named), None) or DEFAULT_FLAVOUR

    def is_sim(self, given: str | None) -> bool:
        return given is not None and (given == SIM or given.startswith(SIM_PREFIX))

    def remembered_by(self, run: Run) -> EndpointRequest:
        """This request with each role the user did not give taken from how `run` reached it
        (`sim`, or its URL and model); keys are never stored, so they still come from the
        options or their environment variables."""
        policy, reward = self.policy, self.reward
        policy_model, reward_model = self.policy_model, self.reward_model
        if policy is None and run.policy_url:
            policy = run.policy_url
            if policy != SIM:
                policy_model = policy_model or run.policy_model
        if reward is None and run.reward_url:
            reward = run.reward_url
            if reward != SIM:
                reward_model = reward_model or run.reward_model
        return replace(
            self,
            policy=policy,
            reward=reward,
            policy_model=policy_model,
            reward_model=reward_model,
        )


def _endpoint(
    db: Database, role: str, given: str | None, api_key: str | None, sim_url: str | None
) -> tuple[str, str | None]:
    """(URL, API key) of a role: `sim`, the given URL, or the newest healthy server that
    `rebase serve` registered (whose key, if any, is read from the variable it names)."""
    if given is not None and (given == SIM or given.startswith(SIM_PREFIX)):
        assert sim_url is not None
        return sim_url, None
    if given is not None:
        urls = split_urls(given)
        if any(url == SIM or url.startswith(SIM_PREFIX) for url in urls):
            raise UsageError(
                f"--{role} sim cannot be combined with URLs", f"pass --{role} sim alone"
            )
        return ",".join(urls), api_key
    server = healthy_server(db, role)
    if server is None:
        raise UsageError(
            f"no {role} server given and none registered as healthy",
            f"pass --{role} URL, start one with `rebase serve {role}`, or use --{role} sim",
        )
    if api_key is None and server.api_key_env:
        api_key = os.environ.get(server.api_key_env)
    return server.url, api_key


@asynccontextmanager
async def _simulator(dataset: Dataset, template: str, flavour: str) -> AsyncIterator[str]:
    """The simulator (policy and PRM) on a free port in a background thread of this process,
    serving the problems of `dataset` as loaded (with the user's field names)."""
    from rebase_cli.sim.inprocess import start_in_thread

    config = SimConfig(
        role="both", flavour=flavour, port=0, datasets=(dataset.name,), template=template
    )
    handle = await asyncio.to_thread(start_in_thread, config, problems=dataset.problems)
    try:
        yield handle.url
    finally:
        await asyncio.to_thread(handle.stop)


@asynccontextmanager
async def connected_clients(
    db: Database,
    request: EndpointRequest,
    config: SearchConfig,
    dataset: Dataset,
) -> AsyncIterator[tuple[PolicyClient, HttpReward, Endpoints]]:
    """Policy and reward clients for the run, with the simulator started in-process when
    `--policy sim` / `--reward sim` was asked for, and the model ids resolved from the servers."""
    async with AsyncExitStack() as stack:
        sim_url = None
        flavour = request.sim_flavour()
        if flavour is not None:
            sim_url = await stack.enter_async_context(_simulator(dataset, config.template, flavour))
        policy_url, policy_key = _endpoint(
            db, "policy", request.policy, request.policy_api_key, sim_url
        )
        reward_url, reward_key = _endpoint(
            db, "reward", request.reward, request.reward_api_key, sim_url
        )
        retry = RetryPolicy(
            max_attempts=config.max_retries + 1,
            timeout=config.request_timeout,
            max_total_wait=config.server_wait,
        )
        # The in-process simulator serves both roles; name each model so neither is guessed.
        policy_model = request.policy_model or (
            SIM_POLICY_MODEL if request.is_sim(request.policy) else None
        )
        reward_model = request.reward_model or (
            SIM_REWARD_MODEL if request.is_sim(request.reward) else None
        )
        policy = PolicyClient(
            policy_url,
            model=policy_model,
            api_key=policy_key,
            retry=retry,
            max_in_flight=config.max_in_flight,
            max_n=config.samples_per_request,
            server=request.policy_server,
        )
        stack.push_async_callback(policy.aclose)
        reward = make_reward_client(
            config.reward_protocol,
            reward_url,
            model=reward_model,
            api_key=reward_key,
            retry=retry,
            max_in_flight=config.max_in_flight,
            prm=load_template(config.template).prm,
        )
        stack.push_async_callback(reward.aclose)
        # The in-process simulator's URL dies with this process: the run remembers `sim`.
        endpoints = Endpoints(
            policy_url=SIM if request.policy == SIM else policy_url,
            policy_model=await policy.model_id(),
            reward_url=SIM if request.reward == SIM else reward_url,
            reward_model=await reward.model_id() or reward_model or "unknown",
        )
        # GET /v1/models answers on any OpenAI-compatible server, so a reward URL that points
        # at a policy server (or the wrong --reward-protocol) would only fail at the first
        # scoring call, after the run was created: one tiny scoring call finds it now.
        await reward.score("What is 1 + 1?", [], ["1 + 1 = 2."])
        await policy.sampling_plan()  # identifies the policy server before the run starts
        yield policy, reward, endpoints


def server_capabilities(policy: PolicyClient, reward: HttpReward) -> dict:
    """For roles served by several URLs, each server's figures in this session (requests,
    failed attempts, tokens, outages), under `policy_servers` / `reward_servers`."""
    capabilities: dict = {}
    for role, client in (("policy", policy), ("reward", reward)):
        figures = server_figures(client.endpoint)
        if figures is not None:
            capabilities[f"{role}_servers"] = figures
    return capabilities


def path_scorer_for(config: SearchConfig, reward: HttpReward) -> PathScorer | None:
    """The whole-path scorer of whole-solution sampling (None for every other method)."""
    return PathScorer(reward) if config.whole_solutions else None


def strategy_for(config: SearchConfig) -> Strategy:
    """The search strategy a config asks for, with its parameters."""
    return get_strategy(config.method, config.strategy_params())


async def preflight_check(
    policy: PolicyClient, reward: HttpReward, config: SearchConfig, dataset: Dataset
) -> CheckReport:
    """The cheap part of `rebase check`; a blocker (labels that are not the PRM's tokens,
    scores that do not vary) stops the run before it is created."""
    template = load_template(config.template)
    report = await run_checks(policy, reward, template, dataset.problems, config, full=False)
    if report.blockers:
        first = report.blockers[0]
        more = f" (and {len(report.blockers) - 1} more)" if len(report.blockers) > 1 else ""
        raise ConfigError(
            f"server check failed: {first.detail}{more}",
            f"{first.hint}; `rebase check` with the same options shows every probe; "
            "--skip-check starts the run anyway",
        )
    return report


async def run_search(
    db: Database,
    run_request: RunRequest,
    endpoint_request: EndpointRequest,
    events_factory: Callable[[PreparedRun], SearchEvents],
    on_prepared: Callable[[PreparedRun, Endpoints], None] = lambda p, e: None,
    on_check: Callable[[CheckReport], None] = lambda report: None,
) -> tuple[PreparedRun, RunOutcome]:
    """Resolve everything, then search. Errors before the run starts leave the database as is."""
    lease_ttl()  # a bad REBASE_LEASE_TTL is refused before any run is created
    config = run_request.new_config()
    if config is None:
        run = resolve_run(db, run_request.run_ref or "")
        # The flags' operational values (timeouts, retries, in-flight caps) reach the clients.
        config = continued_config(run, run_request)
        spec: str | None = run.dataset
    else:
        spec = run_request.dataset
    if not spec:
        raise ConfigError("no dataset given", "pass --dataset gsm8k|math500|PATH")
    # Read (and check) the dataset before any server is contacted: a bad file is reported at
    # once, not after waiting --server-wait seconds for a server.
    dataset = await asyncio.to_thread(load_dataset, spec, fields=run_request.fields)
    # Which run is continued is settled before any server is contacted or anything written: a
    # finished run is reported (RunAlreadyDone), a live holder refuses the resume, and the run's
    # own endpoints are used for the roles not given.
    existing = await asyncio.to_thread(run_to_continue, db, run_request, dataset, config)
    if existing is not None:
        assert existing.id is not None
        await asyncio.to_thread(refuse_if_searched, db, existing.id, "resume")
        endpoint_request = endpoint_request.remembered_by(existing)
    async with connected_clients(db, endpoint_request, config, dataset) as (
        policy,
        reward,
        endpoints,
    ):
        check = None
        if endpoint_request.check and existing is None:
            check = await preflight_check(policy, reward, config, dataset)
            on_check(check)
        # Preparing writes (a new run, its problems) in a thread that runs on when cancelled;
        # a signal that lands meanwhile closes the run as interrupted rather than leaving it.
        preparing = asyncio.ensure_future(
            asyncio.to_thread(prepare_run, db, run_request, endpoints, dataset, config)
        )
        cancelled = await finish_despite_cancel(preparing)
        prepared = preparing.result()
        stored = prepared.run.capabilities_json
        previous = json.loads(stored) if stored else None

        def record_capabilities(extra: dict | None = None) -> None:
            current = {
                **policy.capabilities,
                **server_capabilities(policy, reward),
                **(extra or {}),
            }
            merged = reproducibility.merge(previous, current)
            set_run_capabilities(db, prepared.run.id, merged)

        # Recorded before the first level (with a new run's check), so that a killed run still
        # says how it sampled.
        checked = {"check": check.as_dict()} if check is not None and not prepared.resumed else None
        await asyncio.to_thread(record_capabilities, checked)
        # An auto concurrency is settled for this session from the server's capacity; the
        # stored config keeps "auto", so a resume sizes it again for the servers it meets.
        capacity = policy.capacity
        concurrency = prepared.config.problems_at_once(capacity)
        config = prepared.config.model_copy(update={"concurrency": concurrency})
        prepared = replace(
            prepared,
            config=config,
            policy_capacity=capacity,
            policy_queue_priority=policy.capabilities.get("queue_priority"),
        )
        on_prepared(prepared, endpoints)
        ctx = SearchContext(
            store=SqliteSearchStore(db, prepared.run.id, lease_owner()),
            config=prepared.config,
            template=load_template(prepared.config.template),
            strategy=strategy_for(prepared.config),
            policy=policy,
            reward=reward,
            events=events_factory(prepared),
            monitor=DelimiterMonitor(),
            path_scorer=path_scorer_for(prepared.config, reward),
        )
        held = True
        try:
            outcome = await execute_run(ctx, interrupted=cancelled)
        except RunLockedError:
            held = False  # the run belongs to another process: nothing more is written
            raise
        finally:
            # What the policy server supports (n > 1, matched_stop, usage, its sampling plan),
            # what the path scorer saw, and each server's figures go into the run, unless the
            # run turned out to belong to another process.
            if held:
                extra = ctx.path_scorer.capabilities if ctx.path_scorer is not None else None
                await asyncio.to_thread(record_capabilities, extra)
        return prepared, outcome
