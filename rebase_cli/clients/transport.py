"""One model server as the clients see it: its root URL, an `openai.AsyncOpenAI` bound to it,
a cap on requests in flight, and the retry policy.

The search's model requests (POST /v1/completions, /generate, /v1/score, /classify, /pooling)
take the lean path, `Endpoint.post`: the JSON body is serialised once per logical request
(orjson; a retry sends the same bytes), posted on one aiohttp session per server with headers
and timeouts built once, and the reply is read as text and parsed with orjson. Going through
the openai client's `post` instead costs ~0.7 ms of CPU per request (its request options,
httpx request and response models, header and URL building) against ~0.3 ms for the whole
lean path, which alone would exceed the orchestrator's CPU budget per tree node. Failures are
raised as the very exceptions the openai client raises for them (`APIStatusError` subclasses
built by the client itself, `APITimeoutError`, `APIConnectionError` with the aiohttp error as
cause), so retries, failover and the messages users see are unchanged.
Everything else (model lookup, server identification, health checks) goes through the official
client (`Endpoint.client`), with its own retries off (max_retries=0) so that retries are
counted here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx2
import openai
import orjson
import yarl

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
    """The JSON value of a response body; MalformedResponse when it is not JSON.

    orjson first (fast); Python's json reads what orjson refuses but Python servers send
    (NaN, Infinity), so such a value reaches the adapter's own check and its message."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        raise MalformedResponse("the body is not JSON", text) from None


def encode_json(body: Any) -> bytes:
    """`body` as the JSON bytes of a request (built once per logical request)."""
    return orjson.dumps(body)


class Caller:
    """The requests every client makes, over `call` and `current` (one server, or a pool).

    `current()` is the server the attempt running in this task goes to: the endpoint itself,
    or the member a pool chose for it."""

    role: str
    server_count = 1  # the servers behind it (a pool has several)

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
        and text go to `parse`. The body is serialised once, whatever the retries."""
        data = encode_json(body)

        async def send() -> str:
            return await self.current().post(path, data)

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
    """A model server: its model requests on the lean path (`post`), everything else through
    the official openai client (`client`); see the module docstring.

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
        # What every POST of the lean path shares, built once (see the module docstring).
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Bearer {api_key or PLACEHOLDER_API_KEY}",
        }
        # The openai client's aiohttp transport maps its timeout to these three limits (no
        # total), so one slow attempt fails as it would through the client.
        self._post_timeout = aiohttp.ClientTimeout(
            sock_connect=self.timeout, sock_read=self.timeout, connect=self.timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        self._targets: dict[tuple[str, str | None], Target] = {}

    def current(self) -> Endpoint:
        return self

    @property
    def client(self) -> openai.AsyncOpenAI:
        return self._client

    def _open_session(self) -> aiohttp.ClientSession:
        """The aiohttp session of the lean path, opened on first use (it needs a running loop)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_in_flight)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._post_timeout)
        return self._session

    async def post(self, path: str, data: bytes) -> str:
        """One POST attempt of the JSON bytes `data` to `path` (relative to the server root);
        the reply's text. Raises what the openai client would raise for the same failure: an
        `APIStatusError` for a status >= 400, `APITimeoutError` for a timeout,
        `APIConnectionError` when the exchange broke (the aiohttp error is the cause), and
        aiohttp's own `ClientResponseError` when the reply is not HTTP at all."""
        url = self._urls.get(path)
        if url is None:  # parsed once per route: aiohttp would parse a string every time
            url = self._urls[path] = yarl.URL(self.url + path)
        try:
            async with self._open_session().post(
                url, data=data, headers=self._headers, allow_redirects=False
            ) as response:
                status = response.status
                body = await response.read()
                if status >= 400:
                    raise self._status_error(str(url), status, response.raw_headers, body)
        except openai.APIStatusError:
            raise
        except aiohttp.ClientResponseError:
            raise
        except (TimeoutError, asyncio.TimeoutError) as exc:  # one class from Python 3.11 on
            raise openai.APITimeoutError(request=httpx2.Request("POST", str(url))) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise openai.APIConnectionError(request=httpx2.Request("POST", str(url))) from exc
        return body.decode("utf-8", errors="replace")

    def _status_error(
        self, url: str, status: int, headers: Any, body: bytes
    ) -> openai.APIStatusError:
        """The exception the openai client raises for this error reply (it builds it)."""
        response = httpx2.Response(
            status, headers=headers, content=body, request=httpx2.Request("POST", url)
        )
        return self._client._make_status_error_from_response(response)

    async def attempt(self, send: Callable[[], Awaitable[str]]) -> str:
        """One HTTP attempt (`send`) holding one of this server's in-flight slots."""
        async with self._slots:
            return await send()

    def target(self, path: str, not_found_hint: str | None = None) -> Target:
        target = self._targets.get((path, not_found_hint))
        if target is None:
            target = Target(role=self.role, url=self.url, path=path, not_found_hint=not_found_hint)
            self._targets[(path, not_found_hint)] = target
        return target

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
        if self._session is not None:
            await self._session.close()
        await self._client.close()
