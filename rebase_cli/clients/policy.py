"""The policy adapter: one step for n children of a parent through POST /v1/completions.

Works against SGLang (reports `matched_stop`), vLLM (`stop_reason`) and plain OpenAI-compatible
servers. A server that returns fewer choices than `n` gets the missing samples as separate
n=1 requests (seed + sample index), and is then asked one sample per request from the start;
what was learnt about the server is in `capabilities`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rebase_cli.clients.pool import make_endpoint
from rebase_cli.clients.retry import MalformedResponse, RetryPolicy
from rebase_cli.clients.transport import parse_json
from rebase_cli.domain import Completion, StepBatch

COMPLETIONS = "/v1/completions"
STOP_FIELDS = ("matched_stop", "stop_reason")  # SGLang, vLLM
CHARS_PER_TOKEN = 4  # only when a server reports no usage at all


@dataclass(frozen=True)
class Reply:
    """One parsed /v1/completions answer."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int
    stop_field: str | None
    usage_reported: bool


def apportion(total: int, sizes: Sequence[int]) -> list[int]:
    """Split `total` into integers proportional to `sizes` (largest remainder, ties to the
    earlier index); equal parts when every size is 0. The parts always sum to `total`."""
    if not sizes:
        return []
    weights = list(sizes) if any(sizes) else [1] * len(sizes)
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, str | None]:
    """`text` up to the earliest stop string in it, and that stop string (None if none occurs).

    Some OpenAI-compatible servers (`transformers serve`) return the stop string, and the rest of
    the token that held it, inside the text; the step is what comes before it."""
    earliest: tuple[int, str] | None = None
    for candidate in stop:
        at = text.find(candidate) if candidate else -1
        if at >= 0 and (earliest is None or at < earliest[0]):
            earliest = (at, candidate)
    if earliest is None:
        return text, None
    return text[: earliest[0]], earliest[1]


def parse_reply(data: Any, requested: int, body: str, stop: Sequence[str] = ()) -> Reply:
    """Validate a completions body. Raises MalformedResponse on a wrong shape.

    Choices are ordered by `index`; more than `requested` are cut off. A text that still holds
    one of the requested `stop` strings is cut there, and that string becomes its matched stop
    when the server reported none. The usage's completion_tokens (summed over choices by the
    server) is split over the choices by text length, exact when there is one choice."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices:
        raise MalformedResponse("no `choices` list", body)
    if not all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in choices):
        raise MalformedResponse("a choice without `text`", body)
    if all(_count(c.get("index")) is not None for c in choices):
        choices = sorted(choices, key=lambda c: c["index"])
    choices = choices[:requested]
    stop_field = next((f for f in STOP_FIELDS if any(f in c for c in choices)), None)
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    prompt_tokens = _count(usage.get("prompt_tokens"))
    completion_tokens = _count(usage.get("completion_tokens"))
    usage_reported = prompt_tokens is not None and completion_tokens is not None
    texts = [c["text"] for c in choices]
    if completion_tokens is None:
        completion_tokens = sum(-(-len(t) // CHARS_PER_TOKEN) for t in texts)
    tokens = apportion(completion_tokens, [len(t) for t in texts])
    completions = tuple(
        _completion(c, n, stop_field, stop) for c, n in zip(choices, tokens, strict=True)
    )
    return Reply(completions, prompt_tokens or 0, completion_tokens, stop_field, usage_reported)


def _completion(choice: dict, tokens: int, stop_field: str | None, stop: Sequence[str]):
    text, found = cut_at_stop(choice["text"], stop)
    matched = _stop_value(choice.get(stop_field)) if stop_field else None
    finish_reason = _finish_reason(choice.get("finish_reason"))
    if found is not None:
        # The server generated past a stop string: the step ended there, whatever it says.
        finish_reason, matched = "stop", found
    return Completion(text, finish_reason, matched, tokens)


def _finish_reason(value: Any) -> str:
    return value if isinstance(value, str) and value else "unknown"


def _stop_value(value: Any) -> str | int | None:
    if isinstance(value, bool):
        return None
    return value if isinstance(value, (str, int)) else None


class PolicyClient:
    """Generates steps from an OpenAI-compatible policy server.

    `max_n` caps the samples asked in one request (None: all n at once; 1: one per request).
    `model` is resolved from GET /v1/models when not given. Use from one event loop."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 64,
        max_n: int | None = None,
    ) -> None:
        if max_n is not None and max_n < 1:
            raise ValueError("max_n must be >= 1")
        self.endpoint = make_endpoint(
            "policy",
            base_url,
            api_key=api_key,
            retry=retry,
            timeout=timeout,
            max_in_flight=max_in_flight,
        )
        self.max_n = max_n
        self._model = model
        self._model_lock = asyncio.Lock()
        self._capabilities: dict[str, Any] = {
            "n_supported": None,
            "reports_matched_stop": None,
            "matched_stop_field": None,
            "reports_usage": None,
        }

    @property
    def base_url(self) -> str:
        return self.endpoint.url

    @property
    def capabilities(self) -> dict[str, Any]:
        """What the server was seen to support (None: not observed yet). JSON-serialisable."""
        return dict(self._capabilities)

    async def model_id(self) -> str:
        """The model name used in requests: the given one, else the server's first model."""
        async with self._model_lock:
            if self._model is None:
                self._model = await self.endpoint.model_id()
        return self._model

    async def expand(
        self,
        prompt: str,
        n: int,
        *,
        stop: Sequence[str],
        max_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> StepBatch:
        """`n` continuations of `prompt`, each ending at a stop string, EOS or `max_tokens`.

        Sample i corresponds to seed `seed + i` (a request for samples i..j sends seed + i and
        n = j - i + 1). Completions come back in sample order."""
        if n < 1:
            raise ValueError("n must be >= 1")
        model = await self.model_id()
        args = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
        }
        if stop:
            args["stop"] = list(stop)

        async def request(first: int, count: int) -> tuple[Reply, int]:
            return await self._request(args, count, None if seed is None else seed + first)

        chunks = self._chunks(n)
        results = await asyncio.gather(*(request(first, count) for first, count in chunks))
        slots: list[Completion | None] = [None] * n
        replies = []
        missing = []
        for (first, count), (reply, retries) in zip(chunks, results, strict=True):
            replies.append((reply, retries))
            slots[first : first + len(reply.completions)] = reply.completions
            missing.extend(range(first + len(reply.completions), first + count))
            if count > 1:
                self._capabilities["n_supported"] = len(reply.completions) == count
        if missing:
            extra = await asyncio.gather(*(request(i, 1) for i in missing))
            for i, (reply, retries) in zip(missing, extra, strict=True):
                replies.append((reply, retries))
                slots[i] = reply.completions[0]
        for reply, _ in replies:
            self._observe(reply)
        return StepBatch(
            completions=tuple(c for c in slots if c is not None),
            prompt_tokens=sum(r.prompt_tokens for r, _ in replies),
            completion_tokens=sum(r.completion_tokens for r, _ in replies),
            requests=len(replies),
            retries=sum(retries for _, retries in replies),
        )

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        """(first sample, count) per request."""
        size = 1 if self._capabilities["n_supported"] is False else (self.max_n or n)
        return [(first, min(size, n - first)) for first in range(0, n, size)]

    async def _request(self, args: dict[str, Any], n: int, seed: int | None) -> tuple[Reply, int]:
        params = dict(args, n=n)
        if seed is not None:
            params["seed"] = seed

        async def send() -> str:
            raw = await self.endpoint.client.completions.with_raw_response.create(**params)
            return raw.http_response.text

        stop = params.get("stop") or ()
        return await self.endpoint.call(
            COMPLETIONS,
            send,
            lambda text: parse_reply(parse_json(text), n, text, stop),
            tokens=lambda reply: reply.prompt_tokens + reply.completion_tokens,
        )

    def _observe(self, reply: Reply) -> None:
        caps = self._capabilities
        if caps["reports_matched_stop"] is not True:
            caps["reports_matched_stop"] = reply.stop_field is not None
            caps["matched_stop_field"] = reply.stop_field
        if caps["reports_usage"] is not True:
            caps["reports_usage"] = reply.usage_reported

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    def __repr__(self) -> str:  # never shows the API key
        return f"PolicyClient({self.base_url!r}, model={self._model!r})"
