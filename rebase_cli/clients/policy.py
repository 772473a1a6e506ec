"""The policy adapter: one step for n children of a parent.

The client first finds out which server it talks to (`server_kind`, or the kind the user
named) and follows that server's sampling plan (`sampling_plan`): POST /v1/completions with n
and a seed (vLLM, one request per parent), or SGLang's native POST /generate with one entry
per child of the whole level (a seed per child on deterministic SGLang, none on default SGLang,
which ignores seeds). Works against SGLang (reports `matched_stop`), vLLM (`stop_reason`, null
at EOS) and plain OpenAI-compatible servers. A server that returns fewer choices than `n`
gets the missing samples as separate n=1 requests (seed + sample index), and is then asked one
sample per request from the start. Token counts come from the per-choice token ids where the
server returns them. What was learnt about the server, and whether its samples are
reproducible, is in `capabilities`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rebase_cli.clients.pool import make_endpoint
from rebase_cli.clients.retry import MalformedResponse, RetryPolicy
from rebase_cli.clients.sampling_plan import GENERATE, SamplingPlan, plan_for
from rebase_cli.clients.server_kind import SERVER_KINDS, ServerKind, identify
from rebase_cli.domain import Completion, StepBatch

COMPLETIONS = "/v1/completions"
NATIVE_GENERATE = "/generate"
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

    @property
    def exact_tokens(self) -> bool:
        return all(c.exact_tokens for c in self.completions)


@dataclass(frozen=True)
class StepRequest:
    """One parent's children as `PolicyClient.expand` takes them."""

    prompt: str
    n: int
    stop: tuple[str, ...]
    max_new_tokens: int
    temperature: float
    top_p: float = 1.0
    seed: int | None = None


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


def _token_ids(choice: dict) -> list[int] | None:
    """The choice's token ids when they are a list of non-negative ints (bools excluded)."""
    ids = choice.get("token_ids")
    if not isinstance(ids, list):
        return None
    # map/set/min run in C: this is checked for every token of every reply.
    if ids and (not set(map(type, ids)) <= {int} or min(ids) < 0):
        return None
    return ids


def parse_reply(data: Any, requested: int, body: str, stop: Sequence[str] = ()) -> Reply:
    """Validate a completions body. Raises MalformedResponse on a wrong shape.

    Choices are ordered by `index`; more than `requested` are cut off. A text that still holds
    one of the requested `stop` strings is cut there, and that string becomes its matched stop
    when the server reported none. A choice's token count is the length of its `token_ids`
    when every choice has them (exact); otherwise the usage's completion_tokens (summed over
    choices by the server) is split over the choices by text length, exact only when there is
    one choice."""
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
    ids = [_token_ids(c) for c in choices]
    if all(i is not None for i in ids):
        tokens = [len(i) for i in ids]  # type: ignore[arg-type]
        exact = True
        if completion_tokens is None:
            completion_tokens = sum(tokens)
    else:
        if completion_tokens is None:
            completion_tokens = sum(-(-len(t) // CHARS_PER_TOKEN) for t in texts)
        tokens = apportion(completion_tokens, [len(t) for t in texts])
        exact = len(choices) == 1 and usage_reported
    completions = tuple(
        _completion(c, n, stop_field, stop, exact) for c, n in zip(choices, tokens, strict=True)
    )
    return Reply(completions, prompt_tokens or 0, completion_tokens, stop_field, usage_reported)


def _completion(
    choice: dict, tokens: int, stop_field: str | None, stop: Sequence[str], exact: bool
) -> Completion:
    text, found = cut_at_stop(choice["text"], stop)
    matched = _stop_value(choice.get(stop_field)) if stop_field else None
    finish_reason = _finish_reason(choice.get("finish_reason"))
    # vLLM reports EOS as finish_reason "stop" with stop_reason null (a stop string or stop
    # token would be named there).
    eos = stop_field == "stop_reason" and finish_reason == "stop" and matched is None
    if found is not None:
        # The server generated past a stop string: the step ended there, whatever it says.
        finish_reason, matched, eos = "stop", found, False
    return Completion(text, finish_reason, matched, tokens, eos=eos, exact_tokens=exact)


def parse_generate_reply(
    data: Any, sizes: Sequence[int], body: str, stops: Sequence[Sequence[str]]
) -> list[Reply]:
    """Validate SGLang's native /generate answer to a batch (a list of {text, output_ids,
    meta_info}, one per input) whose inputs are `sizes[k]` copies of prompt k in a row, asked
    with stop strings `stops[k]`: one Reply per prompt. Token counts are the lengths of
    `output_ids` (exact); a prompt's tokens are counted once, from its first output."""
    requested = sum(sizes)
    if not isinstance(data, list) or len(data) != requested:
        raise MalformedResponse(f"expected a list of {requested} outputs", body)
    replies, first = [], 0
    for size, stop in zip(sizes, stops, strict=True):
        completions, total = [], 0
        for index in range(first, first + size):
            completion = _generate_output(data[index], index, body, stop)
            completions.append(completion)
            total += completion.completion_tokens
        meta = data[first]["meta_info"]
        prompt_tokens = _count(meta.get("prompt_tokens")) or 0
        replies.append(Reply(tuple(completions), prompt_tokens, total, "matched_stop", True))
        first += size
    return replies


def _generate_output(output: Any, index: int, body: str, stop: Sequence[str]) -> Completion:
    meta = output.get("meta_info") if isinstance(output, dict) else None
    if not isinstance(meta, dict) or not isinstance(output.get("text"), str):
        raise MalformedResponse("an output without `text` and `meta_info`", body)
    finish = meta.get("finish_reason")
    kind = finish.get("type") if isinstance(finish, dict) else None
    if kind not in ("stop", "length"):
        raise MalformedResponse(f"output {index} did not finish ({finish!r})", body)
    ids = output.get("output_ids")
    tokens = len(ids) if isinstance(ids, list) else _count(meta.get("completion_tokens")) or 0
    text, found = cut_at_stop(output["text"], stop)
    matched = _stop_value(finish.get("matched")) if kind == "stop" else None
    if found is not None:
        kind, matched = "stop", found
    return Completion(text, kind, matched, tokens, exact_tokens=True)


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
        server: str | None = None,
    ) -> None:
        if max_n is not None and max_n < 1:
            raise ValueError("max_n must be >= 1")
        if server is not None and server not in SERVER_KINDS:
            raise ValueError(f"server must be one of {SERVER_KINDS}")
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
        self._kind: ServerKind | None = None if server is None else ServerKind(server, None, False)
        self._plan: SamplingPlan | None = None
        self._capabilities: dict[str, Any] = {
            "n_supported": None,
            "reports_matched_stop": None,
            "matched_stop_field": None,
            "reports_usage": None,
            "token_counts": None,
        }

    @property
    def base_url(self) -> str:
        return self.endpoint.url

    @property
    def capabilities(self) -> dict[str, Any]:
        """What the server was seen to support (None: not observed yet). JSON-serialisable."""
        return dict(self._capabilities)

    @property
    def capacity(self) -> int | None:
        """Requests the server (all of a pool's, or a router's) runs at once, as it says once
        identified; None when it does not say or was named by the user rather than asked."""
        return None if self._kind is None else self._kind.capacity

    async def model_id(self) -> str:
        """The model name used in requests: the given one, else the server's first model."""
        if self._model is not None:  # known: no lock to take on every request
            return self._model
        async with self._model_lock:
            if self._model is None:
                self._model = await self.endpoint.model_id()
        return self._model

    async def sampling_plan(self) -> SamplingPlan:
        """The plan for this server, identifying the server on first use."""
        if self._plan is not None:  # known: no lock to take on every request
            return self._plan
        async with self._model_lock:
            if self._plan is None:
                if self._kind is None:
                    self._kind = await identify(self.endpoint)
                self._plan = plan_for(
                    self._kind.kind, self.max_n, native_batch=not self._kind.behind_router
                )
                facts = self._plan.describe()
                if not self._kind.detected:
                    facts["reproducible_why"] += " (server kind given by the user, not asked)"
                priority = self._kind.priority
                self._capabilities.update(
                    facts,
                    server_version=self._kind.version,
                    server_detected=self._kind.detected,
                    queue_priority=None if priority is None else priority.describe(),
                )
        return self._plan

    async def expand(
        self,
        prompt: str,
        n: int,
        *,
        stop: Sequence[str],
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> StepBatch:
        """`n` continuations of `prompt`, each ending at a stop string, EOS or `max_new_tokens`
        (the cap of this request's completion tokens, not the config's per-path `max_tokens`).

        Sample i corresponds to seed `seed + i` (a request for samples i..j sends seed + i and
        n = j - i + 1), unless the server's plan sends no seed. Completions come back in
        sample order."""
        step = StepRequest(prompt, n, tuple(stop), max_new_tokens, temperature, top_p, seed)
        [batch] = await self.expand_level([step])
        return batch

    async def expand_level(
        self, steps: Sequence[StepRequest], *, depth: int = 0
    ) -> list[StepBatch]:
        """Each parent's children (as `expand` gives them), in the order of `steps`; the
        parents are at `depth` (0: the root).

        On the native /generate plan every child of the level is one entry of a single
        request, with its own prompt, sampling parameters and seed; that request is counted
        on the first parent's batch. Otherwise each parent is asked as `expand` asks it, all
        at once. A server that orders its queue by priority gets the depth's priority on
        every request (see `queue_priority`)."""
        if any(step.n < 1 for step in steps):
            raise ValueError("n must be >= 1")
        if not steps:
            return []
        plan = await self.sampling_plan()
        order = None if self._kind is None else self._kind.priority
        priority = None if order is None else order.for_depth(depth)
        if plan.route == GENERATE:
            return await self._generate(steps, plan.send_seed, priority)
        if len(steps) == 1:  # the usual case on one parent: no task to create for gather
            return [await self._completions(steps[0], plan, priority)]
        return list(
            await asyncio.gather(*(self._completions(step, plan, priority) for step in steps))
        )

    async def _completions(
        self, step: StepRequest, plan: SamplingPlan, priority: int | None
    ) -> StepBatch:
        """One parent's children through /v1/completions, n per request as the plan allows."""
        n, seed = step.n, step.seed if plan.send_seed else None
        model = await self.model_id()
        args = {
            "model": model,
            "prompt": step.prompt,
            "max_tokens": step.max_new_tokens,  # the OpenAI API's name for the per-request cap
            "temperature": step.temperature,
            "top_p": step.top_p,
        }
        if step.stop:
            args["stop"] = list(step.stop)
        if plan.token_ids:
            args["return_token_ids"] = True
        if priority is not None:
            args["priority"] = priority

        async def request(first: int, count: int) -> tuple[Reply, int]:
            return await self._request(args, count, None if seed is None else seed + first)

        chunks = self._chunks(n)
        if len(chunks) == 1:  # the usual case: no task to create and schedule for gather
            results = [await request(*chunks[0])]
        else:
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
            seeded=seed is not None,
        )

    async def _generate(
        self, steps: Sequence[StepRequest], send_seed: bool, priority: int | None
    ) -> list[StepBatch]:
        """Every child of `steps` in one native /generate request: n copies of each prompt
        (SGLang's radix cache prefills each once), each copy with its own `sampling_seed`
        (seed + i). The batch has one `priority`, as SGLang takes it."""
        texts: list[str] = []
        params: list[dict[str, Any]] = []
        for step in steps:
            p: dict[str, Any] = {
                "max_new_tokens": step.max_new_tokens,
                "temperature": step.temperature,
                "top_p": step.top_p,
            }
            if step.stop:
                p["stop"] = list(step.stop)
            for index in range(step.n):
                texts.append(step.prompt)
                if send_seed and step.seed is not None:
                    params.append(dict(p, sampling_seed=step.seed + index))
                else:
                    params.append(p)
        sizes = [step.n for step in steps]
        stops = [step.stop for step in steps]
        body: dict[str, Any] = {"text": texts, "sampling_params": params}
        if priority is not None:
            body["priority"] = priority
        replies, retries = await self.endpoint.post_json(
            NATIVE_GENERATE,
            body,
            lambda data, text: parse_generate_reply(data, sizes, text, stops),
            not_found_hint="the server is not SGLang; pass --policy-server to name its kind",
        )
        batches = []
        for index, (step, reply) in enumerate(zip(steps, replies, strict=True)):
            self._observe(reply)
            batches.append(
                StepBatch(
                    completions=reply.completions,
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    requests=1 if index == 0 else 0,
                    retries=retries if index == 0 else 0,
                    seeded=send_seed and step.seed is not None,
                )
            )
        return batches

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        """(first sample, count) per request."""
        per_request = self._plan.samples_per_request if self._plan else self.max_n
        size = 1 if self._capabilities["n_supported"] is False else (per_request or n)
        return [(first, min(size, n - first)) for first in range(0, n, size)]

    async def _request(self, args: dict[str, Any], n: int, seed: int | None) -> tuple[Reply, int]:
        body = dict(args, n=n)
        if seed is not None:
            body["seed"] = seed
        stop = body.get("stop") or ()
        return await self.endpoint.post_json(
            COMPLETIONS,
            body,
            lambda data, text: parse_reply(data, n, text, stop),
            tokens=lambda reply: reply.prompt_tokens + reply.completion_tokens,
        )

    def _observe(self, reply: Reply) -> None:
        caps = self._capabilities
        if caps["reports_matched_stop"] is not True:
            caps["reports_matched_stop"] = reply.stop_field is not None
            caps["matched_stop_field"] = reply.stop_field
        if caps["reports_usage"] is not True:
            caps["reports_usage"] = reply.usage_reported
        if caps["token_counts"] != "approximate":
            caps["token_counts"] = "exact" if reply.exact_tokens else "approximate"

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    def __repr__(self) -> str:  # never shows the API key
        return f"PolicyClient({self.base_url!r}, model={self._model!r})"
