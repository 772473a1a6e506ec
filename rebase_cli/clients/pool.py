"""Several servers of one role behind one client: per-problem affinity, failover, health checks.

No router fronts the scoring routes (/v1/score, /classify, /pooling), so a client given several
URLs spreads its requests itself:

- Affinity: every request of one problem (the key bound by `affinity.bound_to`) goes to one
  server, so that server's prefix cache holds the problem's tree. A new problem goes to the
  live server holding the fewest problems.
- Failover: a server that refuses connections or times out, or fails `eject_after` attempts in
  a row, is marked down; its problems move to the live servers at their next attempt (the
  retry policy's backoff applies), and a background check polls its GET /health until it
  answers 200 again. A problem that moved stays where it moved (its cache is there now).
- When every server is down, attempts go to the servers anyway, so the retry policy's
  `max_total_wait` decides, as for one server, when the run gives up.

Requests, failed attempts, tokens and outages are counted per server (`server_figures`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import openai

from rebase_cli.clients import affinity
from rebase_cli.clients.retry import RetryPolicy, Target, is_transient, is_unreachable, with_retries
from rebase_cli.clients.transport import Caller, Endpoint
from rebase_cli.errors import EndpointError, UsageError
from rebase_cli.url_lists import split_urls

T = TypeVar("T")
logger = logging.getLogger("rebase.pool")

#: The member the attempt running in this task goes to (read by `EndpointPool.current`).
_ATTEMPT_MEMBER: ContextVar[Endpoint | None] = ContextVar("rebase_pool_member", default=None)
HEALTH_PATH = "/health"
HEALTH_TIMEOUT_S = 5.0


@dataclass
class ServerFigures:
    """What one server of a pool did in this session."""

    requests: int = 0  # HTTP attempts sent to it
    failed_attempts: int = 0  # attempts that failed transiently (each was retried somewhere)
    tokens: int = 0  # tokens of its successful replies, as the adapter counts them
    outages: int = 0  # times it was marked down
    problems_moved_away: int = 0  # problems moved off it after an outage
    problems: int = 0  # problems assigned to it now


@dataclass
class Member:
    endpoint: Endpoint
    index: int
    up: bool = True
    consecutive_failures: int = 0
    in_flight: int = 0
    figures: ServerFigures = field(default_factory=ServerFigures)

    @property
    def url(self) -> str:
        return self.endpoint.url


class EndpointPool(Caller):
    """Several servers of one role, used like one `Endpoint` (see the module docstring).

    Invariants: a key maps to at most one member at a time; it changes member only when its
    member is down and another is up. Use from one event loop; `aclose()` when done."""

    def __init__(
        self,
        role: str,
        base_urls: Sequence[str],
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_in_flight: int = 64,
        eject_after: int = 3,
        recheck_interval: float = 1.0,
    ) -> None:
        endpoints = [
            Endpoint(
                role,
                url,
                api_key=api_key,
                retry=retry,
                timeout=timeout,
                max_in_flight=max_in_flight,
            )
            for url in base_urls
        ]
        roots = [e.url for e in endpoints]
        if len(set(roots)) != len(roots):
            repeated = next(url for url in roots if roots.count(url) > 1)
            raise UsageError(
                f"{role} server {repeated} is given twice", f"list each --{role} URL once"
            )
        if len(endpoints) < 2:
            raise ValueError("a pool needs at least two servers")
        self.role = role
        self.members = [Member(e, i) for i, e in enumerate(endpoints)]
        self.server_count = len(self.members)
        self.url = ",".join(roots)
        self.retry = endpoints[0].retry
        self.timeout = endpoints[0].timeout
        self.eject_after = eject_after
        self.recheck_interval = recheck_interval
        self._assigned: dict[Hashable, Member] = {}
        self._rechecks: set[asyncio.Task[None]] = set()

    # -- choosing a server --------------------------------------------------------------------

    def current(self) -> Endpoint:
        """The member chosen for the attempt running in this task (the first live one outside
        an attempt)."""
        member = _ATTEMPT_MEMBER.get()
        if member is not None:
            return member
        return next((m for m in self.members if m.up), self.members[0]).endpoint

    def choose(self, key: Hashable | None) -> Member:
        """The member for a request carrying `key` (None: the least busy live member)."""
        live = [m for m in self.members if m.up]
        candidates = live or self.members
        if key is None:
            return min(candidates, key=lambda m: (m.in_flight, m.index))
        held = self._assigned.get(key)
        if held is not None and (held.up or not live):
            return held
        chosen = min(candidates, key=lambda m: (m.figures.problems, m.in_flight, m.index))
        if held is not None:
            held.figures.problems -= 1
            held.figures.problems_moved_away += 1
            logger.warning(
                "%s server %s is down: a problem moves to %s", self.role, held.url, chosen.url
            )
        chosen.figures.problems += 1
        self._assigned[key] = chosen
        return chosen

    # -- requests -------------------------------------------------------------------------------

    async def call(
        self,
        path: str,
        send: Callable[[], Awaitable[str]],
        parse: Callable[[str], T],
        *,
        not_found_hint: str | None = None,
        tokens: Callable[[T], int] | None = None,
    ) -> tuple[T, int]:
        """Like `Endpoint.call`; each attempt goes to the member `choose` picks for the
        task's affinity key, so a retry after an outage lands on a live server."""
        key = affinity.current_key()

        async def attempt() -> T:
            member = self.choose(key)
            member.figures.requests += 1
            member.in_flight += 1
            bound = _ATTEMPT_MEMBER.set(member.endpoint)
            try:
                result = parse(await member.endpoint.attempt(send))
            except Exception as exc:
                if is_transient(exc):
                    self._failed(member, exc)
                raise
            finally:
                _ATTEMPT_MEMBER.reset(bound)
                member.in_flight -= 1
            member.consecutive_failures = 0
            if tokens is not None:
                member.figures.tokens += tokens(result)
            return result

        target = Target(role=self.role, url=self.url, path=path, not_found_hint=not_found_hint)
        return await with_retries(attempt, self.retry, target)

    async def model_id(self, *, missing_ok: bool = False) -> str | None:
        """The model every member serves; EndpointError when they disagree (a pool serves one
        model, or its problems would be searched with different ones)."""
        ids = await asyncio.gather(
            *(m.endpoint.model_id(missing_ok=missing_ok) for m in self.members)
        )
        if len(set(ids)) > 1:
            listing = ", ".join(f"{m.url}: {i}" for m, i in zip(self.members, ids, strict=True))
            raise EndpointError(
                f"the {self.role} servers serve different models ({listing})",
                f"give --{self.role} URLs of servers that serve the same model",
            )
        return ids[0]

    # -- health -----------------------------------------------------------------------------

    def _failed(self, member: Member, exc: BaseException) -> None:
        member.figures.failed_attempts += 1
        member.consecutive_failures += 1
        gone = is_unreachable(exc) or isinstance(exc, openai.APITimeoutError)
        if member.up and (gone or member.consecutive_failures >= self.eject_after):
            member.up = False
            member.figures.outages += 1
            logger.warning(
                "%s server %s marked down (%s); checking %s every %g s",
                self.role, member.url, type(exc).__name__, HEALTH_PATH, self.recheck_interval,
            )  # fmt: skip
            task = asyncio.get_running_loop().create_task(self._recheck(member))
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, member: Member) -> None:
        """Poll the member's /health until it answers 200, then take it back."""
        while not member.up:
            await asyncio.sleep(self.recheck_interval)
            if await self._healthy(member):
                member.up = True
                member.consecutive_failures = 0
                logger.warning("%s server %s is back", self.role, member.url)

    async def _healthy(self, member: Member) -> bool:
        try:
            await member.endpoint.client.get(
                member.url + HEALTH_PATH,
                cast_to=str,
                options={"timeout": min(HEALTH_TIMEOUT_S, self.timeout)},
            )
        except openai.APIError:
            return False
        return True

    def figures(self) -> dict[str, dict[str, int | bool]]:
        """Per-server figures, keyed by URL (JSON-serialisable)."""
        return {m.url: {**asdict(m.figures), "up": m.up} for m in self.members}

    async def aclose(self) -> None:
        for task in list(self._rechecks):
            task.cancel()
        await asyncio.gather(*self._rechecks, return_exceptions=True)
        await asyncio.gather(*(m.endpoint.aclose() for m in self.members))


def make_endpoint(
    role: str,
    base_url: str | Sequence[str],
    *,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    max_in_flight: int = 64,
) -> Endpoint | EndpointPool:
    """One `Endpoint` for one URL, an `EndpointPool` for several (comma-separated or a list)."""
    urls = split_urls(base_url)
    if not urls:
        raise UsageError(f"no {role} URL given", f"pass --{role} URL")
    kwargs = {"api_key": api_key, "retry": retry, "timeout": timeout}
    if len(urls) == 1:
        return Endpoint(role, urls[0], max_in_flight=max_in_flight, **kwargs)  # type: ignore[arg-type]
    return EndpointPool(role, urls, max_in_flight=max_in_flight, **kwargs)  # type: ignore[arg-type]


def server_figures(caller: Caller) -> dict[str, dict[str, int | bool]] | None:
    """Per-server figures of a pool; None for a single server (the run's counters say it all)."""
    return caller.figures() if isinstance(caller, EndpointPool) else None
