"""One model server as the clients see it: its root URL, an `openai.AsyncOpenAI` bound to it,
a cap on requests in flight, and the retry policy.

Every request goes through the official client (authentication header, timeouts, the HTTP
error mapping), with its own retries off (max_retries=0) so that retries are counted here.
Non-OpenAI routes (/v1/score, /classify, /pooling) are posted as absolute URLs through the same
client and read as text, which is parsed and validated by the adapter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import openai

from rebase_cli.clients.retry import MalformedResponse, RetryPolicy, Target, with_retries
from rebase_cli.errors import EndpointError

T = TypeVar("T")

# The Authorization header needs some value; local servers ignore it.
PLACEHOLDER_API_KEY = "EMPTY"


def server_root(base_url: str) -> str:
    """The server root of `base_url`: trailing slashes and a trailing /v1 removed.

    Users pass either `http://host:port` or the OpenAI-style `http://host:port/v1`."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(
            f"not an http(s) URL: {base_url!r}", "use a server root such as http://127.0.0.1:30000"
        )
    return url[: -len("/v1")] if url.endswith("/v1") else url


def parse_json(text: str) -> Any:
    """The JSON value of a response body; MalformedResponse when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        raise MalformedResponse("the body is not JSON", text) from None


class Caller:
    """The requests every client makes, over `call` and `current` (one server, or a pool).

    `current()` is the server the attempt running in this task goes to: the endpoint itself,
    or the member a pool chose for it."""

    role: str

    def current(self) -> Endpoint:
        raise NotImplementedError

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The openai client of the server the running attempt goes to."""
        return self.current().client

    async def call(
        self,
        path: str,
        send: Callable[[], Awaitable[str]],
        parse: Callable[[str], T],
        *,
        not_found_hint: str | None = None,
        tokens: Callable[[T], int] | None = None,
    ) -> tuple[T, int]:
        raise NotImplementedError

    async def post_json(
        self,
        path: str,
        body: dict[str, Any],
        parse: Callable[[Any, str], T],
        *,
        not_found_hint: str | None = None,
        tokens: Callable[[T], int] | None = None,
    ) -> tuple[T, int]:
        """POST `body` as JSON to `path` (relative to the server root); the reply's JSON value
        and text go to `parse`."""

        async def send() -> str:
            server = self.current()
            return await server.client.post(server.url + path, body=body, cast_to=str)

        return await self.call(
            path,
            send,
            lambda text: parse(parse_json(text), text),
            not_found_hint=not_found_hint,
            tokens=tokens,
        )

    async def model_id(self, *, missing_ok: bool = False) -> str | None:
        """The first model id of GET /v1/models. With `missing_ok`, None when the server does
        not serve that route (404) or lists no model."""
        path = "/v1/models"

        async def send() -> str:
            server = self.current()
            try:
                return await server.client.get(server.url + path, cast_to=str)
            except openai.NotFoundError:
                if missing_ok:
                    return "null"
                raise

        def first_id(text: str) -> str | None:
            data = parse_json(text)
            models = data.get("data") if isinstance(data, dict) else None
            first = models[0] if isinstance(models, list) and models else None
            model = first.get("id") if isinstance(first, dict) else None
            if isinstance(model, str) and model:
                return model
            if missing_ok and (data is None or models == []):
                return None
            raise MalformedResponse("no model id in `data[0].id`", text)

        model, _ = await self.call(path, send, first_id)
        return model


class Endpoint(Caller):
    """A model server reached through the official openai client.

    Invariant: at most `max_in_flight` HTTP attempts to this server run at once (waiting for a
    backoff does not hold a slot). Use from one event loop; `aclose()` when done."""

    def __init__(
        self,
        role: str,
        base_url: str,
        *,
        api_key: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        max_in_flight: int = 64,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self.role = role
        self.url = server_root(base_url)
        retry = retry or RetryPolicy()
        self.retry = retry if timeout is None else replace(retry, timeout=timeout)
        self.timeout = self.retry.timeout
        self.max_in_flight = max_in_flight
        self._client = openai.AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key or PLACEHOLDER_API_KEY,
            timeout=self.timeout,
            max_retries=0,
            # aiohttp as the transport: httpx's connection pool scans every connection for
            # every queued request, which dominated our CPU with hundreds of requests in flight.
            # The semaphore below caps connections in use.
            http_client=openai.DefaultAioHttpClient(timeout=self.timeout),
        )
        self._slots = asyncio.Semaphore(max_in_flight)

    def current(self) -> Endpoint:
        return self

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._client

    async def attempt(self, send: Callable[[], Awaitable[str]]) -> str:
        """One HTTP attempt (`send`) holding one of this server's in-flight slots."""
        async with self._slots:
            return await send()

    def target(self, path: str, not_found_hint: str | None = None) -> Target:
        return Target(role=self.role, url=self.url, path=path, not_found_hint=not_found_hint)

    async def call(
        self,
        path: str,
        send: Callable[[], Awaitable[str]],
        parse: Callable[[str], T],
        *,
        not_found_hint: str | None = None,
        tokens: Callable[[T], int] | None = None,
    ) -> tuple[T, int]:
        """(parse(body), retries): `send` performs one HTTP attempt and returns the body text;
        `parse` validates it, raising MalformedResponse to have the attempt retried. `tokens`
        (what a reply cost) only matters to a pool, which counts it per server."""

        async def attempt() -> T:
            return parse(await self.attempt(send))

        return await with_retries(attempt, self.retry, self.target(path, not_found_hint))

    async def aclose(self) -> None:
        await self._client.close()
