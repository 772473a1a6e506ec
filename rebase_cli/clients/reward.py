"""Reward adapters: score a sibling group of candidate steps given the question and the path.

One adapter per wire protocol (DESIGN §5):
- `score`: SGLang POST /v1/score, one request per sibling group; score = P(good label token)
  at the step tag, softmax over the good/bad label tokens (Math-Shepherd style PRMs).
- `classify`: SGLang POST /classify, one request per sibling group; score = sigmoid(raw reward)
  (scalar outcome reward models used as step scorers), in the template's chat format for them
  when it has one (SGLang applies none).
- `pooling`: vLLM POST /pooling with token_classify, one request per sibling group (`input` is
  a list, one chat text per candidate); score = p1 of each text's last step row
  (Qwen2.5-Math-PRM).
Every score is in [0, 1] and comes back in the order of the candidates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from rebase_cli.clients import prm_text
from rebase_cli.clients.pool import make_endpoint
from rebase_cli.clients.retry import MalformedResponse, RetryPolicy
from rebase_cli.domain import ScoreBatch
from rebase_cli.errors import ConfigError
from rebase_cli.params import RewardProtocol
from rebase_cli.prompts import PrmFormat

PROBABILITY_SLACK = 1e-6  # servers' softmax may land a hair outside [0, 1]


class RewardClient(Protocol):
    """What the runner needs from a reward server."""

    protocol: str

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        """One score in [0, 1] per candidate step (same order), given the question and the
        steps before it."""
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
    """SGLang /v1/score: the sibling group shares the query, so one request scores it all."""

    protocol = RewardProtocol.score
    path = "/v1/score"

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        if not candidates:
            return ScoreBatch(scores=(), tokens=0, requests=0)
        body: dict[str, Any] = {
            "query": prm_text.score_query(question, previous_steps, self.prm),
            "items": [prm_text.score_item(c, self.prm) for c in candidates],
            "label_token_ids": [self.prm.good_token_id, self.prm.bad_token_id],
            "apply_softmax": True,
        }
        if self.model:
            body["model"] = self.model
        expected = len(candidates)

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

        (scores, tokens), retries = await self.post(body, parse)
        return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


class ClassifyReward(HttpReward):
    """SGLang /classify: one scalar reward per text, squashed with a sigmoid."""

    protocol = RewardProtocol.classify
    path = "/classify"

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        if not candidates:
            return ScoreBatch(scores=(), tokens=0, requests=0)
        texts = [
            prm_text.classify_text(question, [*previous_steps, c], self.prm) for c in candidates
        ]
        expected = len(candidates)

        def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
            return classify_scores(data, text, expected)

        (scores, tokens), retries = await self.post({"text": texts}, parse)
        return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


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
    """vLLM /pooling (token_classify): the sibling group in one request, one input per
    candidate path; each candidate's score is its last step row's p1."""

    protocol = RewardProtocol.pooling
    path = "/pooling"

    async def score(
        self, question: str, previous_steps: Sequence[str], candidates: Sequence[str]
    ) -> ScoreBatch:
        if not candidates:
            return ScoreBatch(scores=(), tokens=0, requests=0)
        body: dict[str, Any] = {
            "input": [
                prm_text.qwen_prm_chat(question, [*previous_steps, c], self.prm) for c in candidates
            ],
            "task": "token_classify",
        }
        if self.model:
            body["model"] = self.model
        expected = len(candidates)

        def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
            items = data.get("data") if isinstance(data, dict) else None
            if not isinstance(items, list) or len(items) != expected:
                raise MalformedResponse(f"expected `data` with {expected} results", text)
            if not all(isinstance(item, dict) for item in items):
                raise MalformedResponse("a result is not an object", text)
            if all(_index(item) is not None for item in items):
                items = sorted(items, key=_index)
            return tuple(_last_p1(item, text) for item in items), _prompt_tokens(data)

        (scores, tokens), retries = await self.post(body, parse)
        return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


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
