"""Bounded retries with jittered exponential backoff, and the errors a user sees at the end.

What is retried: 5xx (and 408/429), timeouts, connection errors and malformed bodies; those
are what a loaded, restarting or briefly broken model server produces. Any other 4xx is the
caller's mistake (wrong route, bad key, wrong protocol) and becomes an EndpointError at once.

When to stop: a server that answers badly (5xx, malformed, timeouts) gets `max_attempts`
attempts. A server that cannot be connected to at all is probably restarting (loading a model
takes minutes), so connection failures are retried, whatever the attempt count, until
`max_total_wait` seconds have passed since the first attempt. A dead server therefore fails
after a known time with one line naming the server and the last error.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import openai

from rebase_cli.errors import EndpointError

T = TypeVar("T")

RETRIED_STATUS = frozenset({408, 429})
EXCERPT_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one logical request.

    `timeout`: seconds for one HTTP attempt. `max_attempts`: attempts in all (1 = no retry)
    after failures where the server answered or timed out. `max_total_wait`: seconds after the
    first attempt during which connection failures are retried (a restarting server).
    Backoff before retry k (1-based) is min(backoff_initial * 2**(k-1), backoff_max) plus a
    uniform jitter in [0, jitter] seconds, so concurrent callers do not retry in lockstep."""

    max_attempts: int = 7
    timeout: float = 120.0
    max_total_wait: float = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.timeout <= 0 or self.max_total_wait < 0:
            raise ValueError("timeout must be > 0 and max_total_wait >= 0")


class MalformedResponse(Exception):
    """A 2xx answer whose body is not what the protocol promises (retried like a 5xx)."""

    def __init__(self, problem: str, body: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.body = body


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` on one line, cut to `limit` characters (for error messages)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def response_text(exc: openai.APIStatusError) -> str:
    """The body the server sent with an error status, best effort."""
    try:
        return exc.response.text
    except Exception:  # a body that cannot be decoded is still worth the status line
        return str(exc.body or "")


def is_transient(exc: BaseException) -> bool:
    """True for failures worth another attempt."""
    if isinstance(exc, (MalformedResponse, openai.APIConnectionError)):  # incl. timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500 or exc.status_code in RETRIED_STATUS
    return False


@dataclass(frozen=True)
class Target:
    """What a request goes to, for messages: e.g. role "policy", url "http://h:30000",
    path "/v1/completions", and a hint for a 404 (the route is not served)."""

    role: str
    url: str
    path: str
    not_found_hint: str | None = None

    @property
    def where(self) -> str:
        return f"{self.role} server {self.url}"


def seconds(value: float) -> str:
    """A duration for messages: one decimal below 10 s, whole seconds above."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def refused(target: Target, exc: openai.APIStatusError) -> EndpointError:
    """The EndpointError for a non-retried error status (a 4xx)."""
    status = exc.status_code
    if status == 404 and target.not_found_hint:
        return EndpointError(
            f"{target.where} does not serve {target.path} (HTTP 404)", target.not_found_hint
        )
    key_hint = f"--{target.role}-api-key or REBASE_{target.role.upper()}_API_KEY"
    hint = {
        401: f"check the API key ({key_hint})",
        403: f"check the API key and its permissions ({key_hint})",
        404: "check the URL: it should be the server root, e.g. http://127.0.0.1:30000",
    }.get(status, "the server rejected the request; check the model name and its log")
    body = excerpt(response_text(exc))
    return EndpointError(f"{target.where} refused {target.path}: HTTP {status}: {body}", hint)


def gave_up(
    target: Target, exc: BaseException, attempts: int, elapsed: float, timeout: float
) -> EndpointError:
    """The EndpointError after the last retryable failure."""
    plural = "s" if attempts != 1 else ""
    if isinstance(exc, openai.APITimeoutError) and not is_unreachable(exc):
        return EndpointError(
            f"{target.where} did not answer {target.path} within {timeout:g} s "
            f"({attempts} attempt{plural} over {seconds(elapsed)})",
            "the server is overloaded or stuck: check its log, lower --concurrency or raise "
            "--request-timeout",
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc
        return EndpointError(
            f"{target.where} unreachable for {seconds(elapsed)} ({attempts} attempt{plural}): "
            f"{excerpt(str(cause) or type(cause).__name__)}",
            "is the server running at that address? `rebase serve` starts one",
        )
    tried = f"{attempts} attempt{plural} over {seconds(elapsed)}"
    if isinstance(exc, openai.APIStatusError):
        return EndpointError(
            f"{target.where} kept failing on {target.path}: HTTP {exc.status_code} "
            f"({tried}): {excerpt(response_text(exc))}",
            "see the server's log",
        )
    if isinstance(exc, MalformedResponse):
        return EndpointError(
            f"{target.where} sent malformed answers to {target.path} ({tried}): "
            f"{exc.problem}; body: {excerpt(exc.body, 200)!r}",
            "is it the right kind of server for this protocol?",
        )
    return EndpointError(f"{target.where} failed on {target.path} ({tried}): {exc}")


def is_unreachable(exc: BaseException | None) -> bool:
    """True when no connection could be made (refused, reset, DNS, connect timeout).

    The aiohttp transport reports a refused connection as a *connect timeout*, so the cause
    chain is inspected rather than the openai error class alone."""
    if not isinstance(exc, openai.APIConnectionError):
        return False
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, ConnectionError) or "Connect" in type(seen).__name__:
            return True
        seen = seen.__cause__ or seen.__context__
    return not isinstance(exc, openai.APITimeoutError)


def backoff(policy: RetryPolicy, retry: int) -> float:
    """Seconds to wait before retry `retry` (1-based): exponential, capped, plus jitter."""
    exponential = min(policy.backoff_initial * 2 ** (retry - 1), policy.backoff_max)
    return max(0.0, exponential) + random.uniform(0.0, policy.jitter)


def out_of_tries(
    policy: RetryPolicy, failure: BaseException, attempts: int, elapsed: float
) -> bool:
    """Whether to stop after `attempts` attempts failed, the last with `failure`, `elapsed`
    seconds after the first began. Connection failures: the time bound; anything else: the
    attempt bound."""
    if is_unreachable(failure):
        return elapsed >= policy.max_total_wait
    return attempts >= policy.max_attempts


async def with_retries(
    attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, target: Target
) -> tuple[T, int]:
    """Run `attempt` until it succeeds; return (its result, retries used).

    `attempt` raises openai errors or MalformedResponse; a non-retried status becomes an
    EndpointError at once, exhaustion becomes an EndpointError naming the last failure.
    Cancellation passes straight through. A first attempt that succeeds costs one await and
    nothing else (this runs for every model request)."""
    started = time.monotonic()
    attempts = 0
    try:
        while True:
            attempts += 1
            try:
                return await attempt(), attempts - 1
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if out_of_tries(policy, exc, attempts, time.monotonic() - started):
                    raise
            await asyncio.sleep(backoff(policy, attempts))
    except openai.APIStatusError as exc:
        if not is_transient(exc):
            raise refused(target, exc) from None
        raise gave_up(target, exc, attempts, time.monotonic() - started, policy.timeout) from None
    except (openai.APIConnectionError, MalformedResponse) as exc:
        raise gave_up(target, exc, attempts, time.monotonic() - started, policy.timeout) from None
    except aiohttp.ClientResponseError as exc:
        # The aiohttp transport lets a reply that is not HTTP at all (another protocol on the
        # port: SSH, a database, TLS) escape as its own error rather than an openai one.
        first = excerpt(" ".join(str(exc.message or type(exc).__name__).split()))
        raise EndpointError(
            f"{target.where} does not speak HTTP ({first})",
            "check the URL's port: it must be the OpenAI-compatible server's",
        ) from None
