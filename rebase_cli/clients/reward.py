"""Reward adapters: score the candidate steps of one level's sibling groups, given the
question and each group's path, in one request.

One adapter per wire protocol (DESIGN §5):
- `score`: SGLang POST /v1/score; score = P(good label token) at the step tag, softmax over the
  good/bad label tokens (Math-Shepherd style PRMs). SGLang scores `query + item` for every
  item, concatenated as text before tokenising (0.5.23 `score_request`), so several groups go
  in one request as the groups' common prefix (the query) and, per candidate, the rest of its
  group's query + the candidate (the item): every item is scored on exactly the text a
  per-group request would send.
- `classify`: SGLang POST /classify; score = sigmoid(raw reward) (scalar outcome reward models
  used as step scorers), in the template's chat format for them when it has one (SGLang
  applies none); one text per candidate.
- `pooling`: vLLM POST /pooling with token_classify (`input` is a list, one chat text per
  candidate); score = p1 of each text's last step row (Qwen2.5-Math-PRM).
Every score is in [0, 1] and comes back in the order of the groups, then of their candidates.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from rebase_cli.clients import prm_text
from rebase_cli.clients.pool import make_endpoint
from rebase_cli.clients.retry import MalformedResponse, RetryPolicy
from rebase_cli.domain import ScoreBatch
from rebase_cli.errors import ConfigError
from rebase_cli.params import RewardProtocol
from rebase_cli.prompts import PrmFormat

PROBABILITY_SLACK = 1e-6  # servers' softmax may land a hair outside [0, 1]


# One sibling group: the steps before it (its parent's path) and its candidate steps.
SiblingGroup = tuple[Sequence[str], Sequence[str]]


def each_path(groups: Sequence[SiblingGroup]) -> Iterator[list[str]]:
    """Every candidate's whole path (its group's steps, then the candidate), group by group."""
    for previous_steps, candidates in groups:
        for candidate in candidates:
            yield [*previous_steps, candidate]


class RewardClient(Protocol):
    """What the runner needs from a reward server."""

    protocol: str

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        """One score in [0, 1] per candidate step (same order), given the question and the
        steps before it."""
        ...

    async def score_level(self, question: str, groups: Sequence[SiblingGroup]) -> ScoreBatch:
        """The candidates of every group in one request: their scores flat, group by group in
        the given order, each group's as `score` would give them."""
        ...

    async def model_id(self) -> str | None: ...

    async def aclose(self) -> None: ...


def probability(value: Any, what: str, body: str) -> float:
    """`value` as a probability; MalformedResponse if it is not a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MalformedResponse(f"{what} is not a finite number: {value!r}", body)
    if not -PROBABILITY_SLACK <= value <= 1 + PROBABILITY_SLACK:
        raise MalformedResponse(f"{what} is not a probability: {value!r}", body)
    return min(max(float(value), 0.0), 1.0)


def sigmoid(raw: float) -> float:
    """Logistic function, stable for large |raw|."""
    if raw >= 0:
        return 1.0 / (1.0 + math.exp(-raw))
    z = math.exp(raw)
    return z / (1.0 + z)


def _prompt_tokens(container: Any) -> int:
    usage = container.get("usage") if isinstance(container, dict) else None
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0


def _reply_tokens(parsed: Any) -> int:
    """The tokens of a parsed reply: every adapter's parse returns (scores, tokens)."""
    return parsed[1]


def _other_protocols(protocol: str) -> str:
    return "|".join(p for p in RewardProtocol if p != protocol)


class HttpReward:
    """Shared plumbing of the adapters: the endpoint, the PRM format, the model name."""

    protocol = ""
    path = ""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        prm: PrmFormat | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_in_flight: int = 64,
    ) -> None:
        self.endpoint = make_endpoint(
            "reward",
            base_url,
            api_key=api_key,
            retry=retry,
            timeout=timeout,
            max_in_flight=max_in_flight,
        )
        self.prm = prm or PrmFormat()
        self.model = model

    @property
    def base_url(self) -> str:
        return self.endpoint.url

    @property
    def not_found_hint(self) -> str:
        return f"pick --reward-protocol {_other_protocols(self.protocol)}, the one it speaks"

    async def model_id(self) -> str | None:
        """The given model name, else the server's first model, else None if it lists none."""
        if self.model is None:
            self.model = await self.endpoint.model_id(missing_ok=True)
        return self.model

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        return await self.score_level(question, [(previous_steps, candidates)])

    async def score_level(self, question: str, groups: Sequence[SiblingGroup]) -> ScoreBatch:
        texts = self.texts(question, [g for g in groups if g[1]])
        if not texts:
            return ScoreBatch(scores=(), tokens=0, requests=0)
        (scores, tokens), retries = await self.post(*self.request(texts))
        return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)

    def texts(self, question: str, groups: Sequence[SiblingGroup]) -> list[Any]:
        """What the request carries for each candidate, in order (adapter-specific)."""
        raise NotImplementedError

    def request(self, texts: list[Any]) -> tuple[dict[str, Any], Callable[[Any, str], Any]]:
        """The body for `texts` and the parser of its reply: (scores, prompt tokens)."""
        raise NotImplementedError

    async def post(self, body: dict[str, Any], parse: Callable[[Any, str], Any]):
        """POST `body` to this adapter's path; `parse(data, body_text)` validates the reply."""
        return await self.endpoint.post_json(
            self.path, body, parse, not_found_hint=self.not_found_hint, tokens=_reply_tokens
        )

    async def aclose(self) -> None:
        await self.endpoint.aclose()

    def __repr__(self) -> str:  # never shows the API key
        return f"{type(self).__name__}({self.base_url!r}, model={self.model!r})"


class ScoreReward(HttpReward):
    """SGLang /v1/score: the level's candidates as items after their common query prefix."""

    protocol = RewardProtocol.score
    path = "/v1/score"

    def texts(self, question: str, groups: Sequence[SiblingGroup]) -> list[tuple[str, str]]:
        """(group query, item) per candidate."""
        out = []
        for previous_steps, candidates in groups:
            query = prm_text.score_query(question, previous_steps, self.prm)
            out.extend((query, prm_text.score_item(c, self.prm)) for c in candidates)
        return out

    def request(self, texts: list[tuple[str, str]]):  # type: ignore[override]
        # One group: its own query, the body a per-group request always had. Several: the
        # queries' common prefix; SGLang scores query + item, so each item is the same text.
        # Character by character, as the text is joined: a prefix of text, not of a path.
        shared = os.path.commonprefix(list({query for query, _ in texts}))  # noqa: RUF071
        body: dict[str, Any] = {
            "query": shared,
            "items": [query[len(shared) :] + item for query, item in texts],
            "label_token_ids": [self.prm.good_token_id, self.prm.bad_token_id],
            "apply_softmax": True,
        }
        if self.model:
            body["model"] = self.model
        expected = len(texts)

        def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
            rows = data.get("scores") if isinstance(data, dict) else None
            if not isinstance(rows, list) or len(rows) != expected:
                raise MalformedResponse(f"expected `scores` with {expected} rows", text)
            scores = []
            for row in rows:
                if not isinstance(row, list) or not row:
                    raise MalformedResponse("a score row is not a non-empty list", text)
                scores.append(probability(row[0], "p(good)", text))
            return tuple(scores), _prompt_tokens(data)

        return body, parse


class ClassifyReward(HttpReward):
    """SGLang /classify: one scalar reward per text, squashed with a sigmoid."""

    protocol = RewardProtocol.classify
    path = "/classify"

    def texts(self, question: str, groups: Sequence[SiblingGroup]) -> list[str]:
        return [prm_text.classify_text(question, path, self.prm) for path in each_path(groups)]

    def request(self, texts: list[str]):  # type: ignore[override]
        expected = len(texts)

        def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
            return classify_scores(data, text, expected)

        return {"text": texts}, parse


def classify_scores(data: Any, text: str, expected: int) -> tuple[tuple[float, ...], int]:
    """The sigmoid of each /classify result's reward (in request order, by `index` when the
    server gives one) and the prompt tokens its `meta_info` reports."""
    if not isinstance(data, list) or len(data) != expected:
        raise MalformedResponse(f"expected a list of {expected} results", text)
    if all(isinstance(r, dict) and isinstance(r.get("index"), int) for r in data):
        data = sorted(data, key=lambda r: r["index"])
    scores, tokens = [], 0
    for result in data:
        embedding = result.get("embedding") if isinstance(result, dict) else None
        if not isinstance(embedding, list) or not embedding:
            raise MalformedResponse("a result without an `embedding` list", text)
        raw = embedding[0]
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise MalformedResponse(f"reward is not a number: {raw!r}", text)
        if not math.isfinite(raw):
            raise MalformedResponse(f"reward is not finite: {raw!r}", text)
        scores.append(sigmoid(float(raw)))
        meta = result.get("meta_info")
        tokens += _prompt_tokens({"usage": meta}) if isinstance(meta, dict) else 0
    return tuple(scores), tokens


class PoolingReward(HttpReward):
    """vLLM /pooling (token_classify): one input per candidate path; each candidate's score is
    its last step row's p1."""

    protocol = RewardProtocol.pooling
    path = "/pooling"

    def texts(self, question: str, groups: Sequence[SiblingGroup]) -> list[str]:
        return [prm_text.qwen_prm_chat(question, path, self.prm) for path in each_path(groups)]

    def request(self, texts: list[str]):  # type: ignore[override]
        body: dict[str, Any] = {"input": texts, "task": "token_classify"}
        if self.model:
            body["model"] = self.model
        expected = len(texts)

        def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list) or len(items) != expected:
                raise MalformedResponse(f"expected `data` with {expected} results", text)
            if not all(isinstance(item, dict) for item in items):
                raise MalformedResponse("a result is not an object", text)
            if all(_index(item) is not None for item in items):
                items = sorted(items, key=_index)
            return tuple(_last_p1(item, text) for item in items), _prompt_tokens(data)

        return body, parse


def _index(item: dict) -> int | None:
    value = item.get("index")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _last_p1(item: dict, text: str) -> float:
    """p1 of the last per-step row of one pooling result."""
    rows = item.get("data")
    if isinstance(rows, list) and rows and all(isinstance(v, (int, float)) for v in rows):
        rows = [rows]  # a single step may come back as one flat row
    if not isinstance(rows, list) or not rows:
        raise MalformedResponse("no per-step rows in a result's `data`", text)
    last = rows[-1]
    if not isinstance(last, list) or len(last) < 2:
        raise MalformedResponse(f"a step row is not [p0, p1]: {json.dumps(last)}", text)
    return probability(last[1], "p1", text)


# One adapter per RewardProtocol (tests/test_clients.py checks that none is missing).
_ADAPTERS: dict[str, type[HttpReward]] = {
    adapter.protocol: adapter for adapter in (ScoreReward, ClassifyReward, PoolingReward)
}


def make_reward_client(
    protocol: str,
    base_url: str | Sequence[str],
    *,
    prm: PrmFormat | None = None,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    max_in_flight: int = 64,
) -> HttpReward:
    """The adapter for `protocol` (a RewardProtocol) at `base_url`."""
    adapter = _ADAPTERS.get(protocol)
    if adapter is None:
        raise ConfigError(
            f"unknown reward protocol {protocol!r}", f"use one of {', '.join(RewardProtocol)}"
        )
    return adapter(
        base_url,
        prm=prm,
        model=model,
        api_key=api_key,
        timeout=timeout,
        retry=retry,
        max_in_flight=max_in_flight,
    )
