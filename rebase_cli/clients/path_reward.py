"""Scoring every step of whole paths (whole-solution sampling), with as few requests as the
reward server allows.

- `score` (SGLang /v1/score, Math-Shepherd style PRMs): first the setwise readout, one request
  per problem: each path is one item with a step tag after every step, and
  `score_extraction_token` (the tag) asks for a label row AT every tag (SGLang 0.5.23
  `ScoringRequest.score_extraction_token`; the response's `scores` is then nested,
  [item][tag][label]). Causal attention makes the row at tag k the score the step-by-step
  request for step k gets. SGLang serves it only when started with `--disable-radix-cache
  --chunked-prefill-size -1` and answers 400 otherwise; older servers ignore the field and
  answer flat rows. Either way the scorer falls back, for the rest of the run, to one request
  per path whose items are the path's step prefixes (query + item is then the same text a
  step-by-step request scores).
- `pooling` (vLLM token_classify): one request per path; the model emits a row per step tag.
- `classify`: one request per path, one text per step prefix.
Scores come back per path, one per step, in step order, each in [0, 1].
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from rebase_cli.clients import prm_text
from rebase_cli.clients.retry import MalformedResponse
from rebase_cli.clients.reward import (
    ClassifyReward,
    HttpReward,
    PoolingReward,
    ScoreReward,
    probability,
)
from rebase_cli.domain import ScoreBatch
from rebase_cli.errors import EndpointError


class PathScorer:
    """Scores whole paths through one reward adapter; remembers whether the server serves the
    setwise readout (`setwise`: None until tried)."""

    def __init__(self, reward: HttpReward) -> None:
        self.reward = reward
        self.setwise: bool | None = None

    @property
    def capabilities(self) -> dict[str, Any]:
        return {"setwise_score": self.setwise}

    async def score_paths(
        self, question: str, paths: Sequence[Sequence[str]]
    ) -> tuple[list[tuple[float, ...]], ScoreBatch]:
        """Per path, the scores of its steps; and the usage of all the requests (its
        `scores` is every score, path after path)."""
        paths = [list(p) for p in paths]
        if not paths:
            return [], ScoreBatch(scores=(), tokens=0, requests=0)
        if isinstance(self.reward, ScoreReward) and self.setwise is not False:
            result = await self._setwise(question, paths)
            if result is not None:
                return result
        batches = await asyncio.gather(*(self._one_path(question, p) for p in paths))
        per_path = [batch.scores for batch in batches]
        return per_path, _merged(per_path, batches)

    async def _setwise(self, question: str, paths: list[list[str]]):
        reward = self.reward
        assert isinstance(reward, ScoreReward)
        prm = reward.prm
        tag = prm.step_tag.strip()
        body: dict[str, Any] = {
            "query": prm_text.shepherd_query(question, [], prm),
            "items": [_tagged_path(steps, prm) for steps in paths],
            "label_token_ids": [prm.good_token_id, prm.bad_token_id],
            "apply_softmax": True,
            "score_extraction_token": tag,
        }
        if reward.model:
            body["model"] = reward.model
        expected = [len(steps) for steps in paths]

        def parse(data: Any, text: str):
            rows = data.get("scores") if isinstance(data, dict) else None
            if not isinstance(rows, list) or len(rows) != len(expected):
                raise MalformedResponse(f"expected `scores` with {len(expected)} items", text)
            if rows and not all(isinstance(item, list) for item in rows):
                raise MalformedResponse("a score item is not a list", text)
            if any(row and not isinstance(row[0], list) for row in rows):
                return None  # flat rows: the server ignored the setwise field
            per_path = []
            for item, count in zip(rows, expected, strict=True):
                if len(item) != count:
                    raise MalformedResponse(f"expected {count} tag rows, got {len(item)}", text)
                per_path.append(tuple(probability(row[0], "p(good)", text) for row in item))
            usage = data.get("usage") if isinstance(data, dict) else None
            tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else 0
            return per_path, tokens if isinstance(tokens, int) else 0

        try:
            parsed, retries = await reward.post(body, parse)
        except EndpointError as exc:
            if "HTTP 400" in exc.message and "extraction" in exc.message:
                self.setwise = False
                return None
            raise
        if parsed is None:
            self.setwise = False
            return None
        self.setwise = True
        per_path, tokens = parsed
        flat = tuple(score for scores in per_path for score in scores)
        return per_path, ScoreBatch(scores=flat, tokens=tokens, requests=1, retries=retries)

    async def _one_path(self, question: str, steps: list[str]) -> ScoreBatch:
        reward = self.reward
        if isinstance(reward, ScoreReward):
            return await _prefix_items(reward, question, steps)
        if isinstance(reward, PoolingReward):
            return await _pooling_rows(reward, question, steps)
        if isinstance(reward, ClassifyReward):
            texts = [
                prm_text.plain_path(question, steps[: k + 1], reward.prm) for k in range(len(steps))
            ]
            return await _classify_texts(reward, texts)
        # An adapter without a batched form: one scoring call per step.
        batches = await asyncio.gather(
            *(reward.score(question, steps[:k], [steps[k]]) for k in range(len(steps)))
        )
        return _merged([b.scores for b in batches], batches)


def _tagged_path(steps: Sequence[str], prm) -> str:  # type: ignore[no-untyped-def]
    """The steps each followed by the tag, separated as the step-by-step query separates them:
    query + this text up to tag k is exactly the text that scores step k alone."""
    return "".join(
        prm_text.shepherd_item(step, prm) + (prm.step_separator if k < len(steps) - 1 else "")
        for k, step in enumerate(steps)
    )


async def _prefix_items(reward: ScoreReward, question: str, steps: list[str]) -> ScoreBatch:
    """One /v1/score request: the question as query, one item per step prefix."""
    query = prm_text.shepherd_query(question, [], reward.prm)
    texts = [(query, _tagged_path(steps[: k + 1], reward.prm)) for k in range(len(steps))]
    (scores, tokens), retries = await reward.post(*reward.request(texts))
    return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


async def _pooling_rows(reward: PoolingReward, question: str, steps: list[str]) -> ScoreBatch:
    """One /pooling request: Qwen2.5-Math-PRM emits a [p0, p1] row per step tag."""
    body: dict[str, Any] = {
        "input": prm_text.qwen_prm_chat(question, steps, reward.prm),
        "task": "token_classify",
    }
    if reward.model:
        body["model"] = reward.model

    def parse(data: Any, text: str) -> tuple[tuple[float, ...], int]:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
            raise MalformedResponse("expected `data` with one result", text)
        rows = items[0].get("data")
        if isinstance(rows, list) and rows and all(isinstance(v, (int, float)) for v in rows):
            rows = [rows]
        if not isinstance(rows, list) or len(rows) != len(steps):
            raise MalformedResponse(f"expected {len(steps)} step rows", text)
        scores = []
        for row in rows:
            if not isinstance(row, list) or len(row) < 2:
                raise MalformedResponse("a step row is not [p0, p1]", text)
            scores.append(probability(row[1], "p1", text))
        usage = data.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else 0
        return tuple(scores), tokens if isinstance(tokens, int) else 0

    (scores, tokens), retries = await reward.post(body, parse)
    return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


async def _classify_texts(reward: ClassifyReward, texts: list[str]) -> ScoreBatch:
    """One /classify request with one text per step prefix, squashed as ClassifyReward does."""
    (scores, tokens), retries = await reward.post(*reward.request(texts))
    return ScoreBatch(scores=scores, tokens=tokens, requests=1, retries=retries)


def _merged(per_path: Sequence[Sequence[float]], batches: Sequence[ScoreBatch]) -> ScoreBatch:
    return ScoreBatch(
        scores=tuple(s for scores in per_path for s in scores),
        tokens=sum(b.tokens for b in batches),
        requests=sum(b.requests for b in batches),
        retries=sum(b.retries for b in batches),
    )
