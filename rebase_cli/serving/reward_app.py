"""The HTTP face of `RewardModel`: the routes SGLang serves for a reward model.

- POST /v1/score: SGLang's ScoringRequest → `{"scores", "model", "usage", "object": "scoring"}`.
- POST /classify (and PUT): SGLang's `{"text": str | [str]}` → one `{"embedding", "meta_info",
  "index"}` per text (a single object for a single text, as SGLang answers).
- POST /tokenize, /v1/tokenize: `{"prompt": str | [str], "add_special_tokens": bool}` →
  `{"tokens", "count", "max_model_len"}`; POST /detokenize, /v1/detokenize: `{"tokens"}` →
  `{"text"}` (SGLang's and vLLM's shapes), so clients can check label token ids.
- GET /health, /v1/models, /server_info (`engine` says which server this is).
Errors are SGLang's `{"object": "error", "message", "type", "code"}` with status 400.
The model computes one request at a time (a lock), off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from rebase_cli import __version__
from rebase_cli.serving.reward_model import RequestError, RewardModel

ENGINE = "rebase-transformers"
Body = TypeVar("Body", bound=BaseModel)


class ScoringRequest(BaseModel):
    query: str | list[int] | None = None
    items: str | list[str] | list[list[int]] | None = None
    label_token_ids: list[int] | list[list[int]] | None = None
    apply_softmax: bool = False
    item_first: bool = False
    temperature: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    model: str | None = None


class TokenizeRequest(BaseModel):
    prompt: str | list[str]
    add_special_tokens: bool = True
    model: str | None = None


class DetokenizeRequest(BaseModel):
    tokens: list[int]
    model: str | None = None


def error(message: str, status: int = 400, kind: str = "BadRequestError") -> JSONResponse:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return JSONResponse(body, status_code=status)


def create_app(reward: RewardModel, *, model_id: str, info: dict[str, Any]) -> FastAPI:
    """The app over a loaded model. `model_id` is what /v1/models lists; `info` is added to
    /server_info (device, dtype, versions)."""
    app = FastAPI(title="rebase reward server", docs_url=None, redoc_url=None)
    lock = threading.Lock()
    started = int(time.time())
    counter = iter(range(1, 1 << 62))

    async def compute(function: Callable[[], Any]) -> Any:
        def locked() -> Any:
            with lock:
                return function()

        return await asyncio.to_thread(locked)

    async def parse(request: Request, schema: type[Body]) -> Body | JSONResponse:
        try:
            return schema.model_validate(await request.json())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            return error(f"invalid request: {where}: {first.get('msg')}")
        except ValueError:
            return error("the body is not JSON")

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {
            "id": model_id,
            "object": "model",
            "created": started,
            "owned_by": ENGINE,
            "root": model_id,
            "max_model_len": reward.max_model_len,
        }
        return {"object": "list", "data": [entry]}

    @app.get("/server_info")
    async def server_info() -> dict[str, Any]:
        return {
            "engine": ENGINE,
            "version": __version__,
            "model_path": model_id,
            "head": reward.head,
            "vocab_size": reward.vocab_size,
            **info,
        }

    @app.post("/v1/score")
    async def score(request: Request) -> Any:
        body = await parse(request, ScoringRequest)
        if isinstance(body, JSONResponse):
            return body
        if body.query is None or body.items is None or body.label_token_ids is None:
            return error("query, items and label_token_ids are required")
        try:
            result = await compute(
                lambda: reward.score(
                    body.query,
                    body.items,
                    body.label_token_ids,
                    apply_softmax=body.apply_softmax,
                    item_first=body.item_first,
                    temperature=body.temperature,
                )
            )
        except RequestError as exc:
            return error(str(exc))
        usage = {
            "prompt_tokens": result.prompt_tokens,
            "total_tokens": result.prompt_tokens,
            "completion_tokens": 0,
        }
        return {
            "scores": result.scores,
            "model": body.model or model_id,
            "usage": usage,
            "object": "scoring",
        }

    @app.api_route("/classify", methods=["POST", "PUT"])
    async def classify(request: Request) -> Any:
        try:
            data = await request.json()
        except ValueError:
            return error("the body is not JSON")
        text = data.get("text") if isinstance(data, dict) else None
        single = isinstance(text, str)
        texts = [text] if single else text
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return error("`text` must be a string or a non-empty list of strings")
        try:
            results = await compute(lambda: reward.classify(texts))
        except RequestError as exc:
            return error(str(exc))
        outputs = [
            {
                "embedding": result.logits,
                "meta_info": {
                    "id": f"classify-{next(counter)}",
                    "prompt_tokens": result.prompt_tokens,
                },
                "index": index,
            }
            for index, result in enumerate(results)
        ]
        return outputs[0] if single else outputs

    async def tokenize(request: Request) -> Any:
        body = await parse(request, TokenizeRequest)
        if isinstance(body, JSONResponse):
            return body
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        tokens = [reward.encode(p, add_special_tokens=body.add_special_tokens) for p in prompts]
        if isinstance(body.prompt, str):
            return {
                "tokens": tokens[0],
                "count": len(tokens[0]),
                "max_model_len": reward.max_model_len,
            }
        counts = [len(t) for t in tokens]
        return {"tokens": tokens, "count": counts, "max_model_len": reward.max_model_len}

    async def detokenize(request: Request) -> Any:
        body = await parse(request, DetokenizeRequest)
        if isinstance(body, JSONResponse):
            return body
        if not all(0 <= t < reward.vocab_size for t in body.tokens):
            return error("token ids must be inside the vocabulary")
        return {"text": reward.decode(body.tokens)}

    for path in ("/tokenize", "/v1/tokenize"):
        app.add_api_route(path, tokenize, methods=["POST"])
    for path in ("/detokenize", "/v1/detokenize"):
        app.add_api_route(path, detokenize, methods=["POST"])
    return app
