"""Request parsing and response encoding for the wire protocols the simulator speaks.

Bodies are checked the way SGLang's pydantic models (and vLLM's, for /pooling) check them: a
wrong type or an impossible value is an HTTP 400 with a one-line message naming the field.
Features a real server has but the simulator does not model (streaming, logprobs, token-id
prompts) are refused with a 400 that says so, rather than answered wrongly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

try:  # orjson is several times faster on the hot path; plain json is the fallback.
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

    JSONDecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised only without orjson
    import json

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    def loads(data: bytes) -> Any:
        return json.loads(data)

    JSONDecodeError = json.JSONDecodeError

MAX_N = 1024


class BadRequest(Exception):
    """A request the real server would refuse with HTTP 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def sglang_error(message: str, code: int = 400, kind: str = "BadRequestError") -> bytes:
    """SGLang's OpenAI-compatible error body."""
    return dumps({"object": "error", "message": message, "type": kind, "param": None, "code": code})


def vllm_error(message: str, code: int = 400, kind: str = "BadRequestError") -> bytes:
    """vLLM's error body."""
    return dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


def parse_body(data: bytes) -> dict[str, Any]:
    """The request's JSON object."""
    try:
        value = loads(data)
    except (JSONDecodeError, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(value).__name__}")
    return value


def _int(body: dict, name: str, default: int | None, *, minimum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"`{name}` must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise BadRequest(f"`{name}` must be >= {minimum}, got {value}")
    return value


def _float(body: dict, name: str, default: float) -> float:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"`{name}` must be a number, got {value!r}")
    return float(value)


def _bool(body: dict, name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"`{name}` must be a boolean, got {value!r}")
    return value


def _texts(body: dict, name: str, *, what: str) -> tuple[list[str], bool]:
    """A required str-or-list-of-str field as a list, and whether it was a single string."""
    if name not in body or body[name] is None:
        raise BadRequest(f"`{name}` is required")
    value = body[name]
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), False
    if isinstance(value, list) and not value:
        raise BadRequest(f"`{name}` must not be empty")
    if isinstance(value, list) and all(
        isinstance(v, int) or (isinstance(v, list) and all(isinstance(t, int) for t in v))
        for v in value
    ):
        raise BadRequest(f"token-id {what} are not supported by the simulator; send text")
    raise BadRequest(f"`{name}` must be a string or a list of strings")


def parse_priority(body: dict[str, Any]) -> int | None:
    """A request's `priority` (SGLang's CompletionRequest and GenerateReqInput): a signed
    64-bit integer, or None when the request gives none."""
    priority = _int(body, "priority", None)
    if priority is not None and not -(1 << 63) <= priority < (1 << 63):
        raise BadRequest(f"priority must be a signed 64-bit integer, got {priority}")
    return priority


@dataclass(frozen=True)
class CompletionParams:
    prompts: list[str]
    n: int
    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    seed: int | None
    return_token_ids: bool = False


def parse_completion(body: dict[str, Any]) -> CompletionParams:
    """POST /v1/completions (SGLang CompletionRequest)."""
    prompts, _ = _texts(body, "prompt", what="prompts")
    if body.get("stream"):
        raise BadRequest("streaming is not supported by the simulator")
    if body.get("echo"):
        raise BadRequest("echo is not supported by the simulator")
    if body.get("logprobs") is not None:
        raise BadRequest("logprobs are not supported by the simulator")
    n = _int(body, "n", 1, minimum=1)
    if n > MAX_N:  # type: ignore[operator]
        raise BadRequest(f"`n` must be <= {MAX_N}, got {n}")
    max_tokens = _int(body, "max_tokens", 16)
    if max_tokens <= 0:  # type: ignore[operator]
        raise BadRequest("max_tokens must be positive")
    temperature = _float(body, "temperature", 1.0)
    if temperature < 0:
        raise BadRequest(f"temperature must be non-negative, got {temperature}")
    top_p = _float(body, "top_p", 1.0)
    if not 0.0 < top_p <= 1.0:
        raise BadRequest(f"top_p must be in (0, 1], got {top_p}")
    stops = _stops(body.get("stop"))
    seed = _int(body, "seed", None)
    return CompletionParams(
        prompts,
        n,  # type: ignore[arg-type]
        max_tokens,  # type: ignore[arg-type]
        temperature,
        top_p,
        stops,
        seed,
        _bool(body, "return_token_ids", False),
    )


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise BadRequest("`stop` must be a string or a list of strings")


@dataclass(frozen=True)
class GenerateItem:
    """One input of SGLang's native POST /generate with its own sampling parameters."""

    text: str
    max_new_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...]
    sampling_seed: int | None


def parse_generate(body: dict[str, Any]) -> tuple[list[GenerateItem], bool]:
    """POST /generate (SGLang GenerateReqInput, text form): the inputs, and whether one text
    came (answered with one object instead of a list)."""
    if body.get("stream"):
        raise BadRequest("streaming is not supported by the simulator")
    if body.get("text") is None:
        if body.get("input_ids") is not None:
            raise BadRequest("token-id inputs are not supported by the simulator; send `text`")
        raise BadRequest("`text` is required")
    texts, single = _texts(body, "text", what="inputs")
    params = body.get("sampling_params") or {}
    if isinstance(params, dict):
        params = [params] * len(texts)
    if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
        raise BadRequest("`sampling_params` must be an object or a list of objects")
    if len(params) != len(texts):
        raise BadRequest(
            f"`sampling_params` has {len(params)} entries for {len(texts)} texts; give one per text"
        )
    items = []
    for text, p in zip(texts, params, strict=True):
        if (_int(p, "n", 1, minimum=1) or 1) > 1:
            raise BadRequest("n > 1 in /generate is not supported by the simulator")
        max_new = _int(p, "max_new_tokens", 128, minimum=0)
        temperature = _float(p, "temperature", 1.0)
        if temperature < 0:
            raise BadRequest(f"temperature must be non-negative, got {temperature}")
        items.append(
            GenerateItem(
                text,
                max_new,  # type: ignore[arg-type]
                temperature,
                _float(p, "top_p", 1.0),
                _stops(p.get("stop")),
                _int(p, "sampling_seed", None),
            )
        )
    return items, single


@dataclass(frozen=True)
class ScoreParams:
    query: str
    items: list[str]
    label_token_ids: list[int]
    apply_softmax: bool
    item_first: bool
    extraction_token: str | None = None


def parse_score(body: dict[str, Any]) -> ScoreParams:
    """POST /v1/score (SGLang ScoringRequest)."""
    # SGLang 0.5.23 `score_request`: an omitted query is "" for text items.
    query = body.get("query", "")
    if query is None:
        query = ""
    if isinstance(query, list):
        raise BadRequest("token-id queries are not supported by the simulator; send text")
    if not isinstance(query, str):
        raise BadRequest("`query` must be a string")
    items, _ = _texts(body, "items", what="items")
    labels = body.get("label_token_ids")
    if (
        not isinstance(labels, list)
        or not labels
        or not all(isinstance(t, int) and not isinstance(t, bool) for t in labels)
    ):
        raise BadRequest("`label_token_ids` must be a non-empty list of token ids")
    extraction = body.get("score_extraction_token")
    if extraction is not None and not isinstance(extraction, str):
        raise BadRequest("`score_extraction_token` must be a string")
    return ScoreParams(
        query,
        items,
        labels,
        _bool(body, "apply_softmax", False),
        _bool(body, "item_first", False),
        extraction,
    )


def parse_classify(body: dict[str, Any]) -> tuple[list[str], bool]:
    """POST /classify (SGLang EmbeddingReqInput): the texts and whether one string came."""
    if body.get("text") is None and body.get("input_ids") is not None:
        raise BadRequest("token-id inputs are not supported by the simulator; send `text`")
    if body.get("text") is None:
        raise BadRequest("`text` is required")
    return _texts(body, "text", what="inputs")


POOLING_TASKS = (None, "token_classify")


def parse_pooling(body: dict[str, Any]) -> list[str]:
    """POST /pooling (vLLM PoolingRequest, completion or chat form): the texts to pool.

    vLLM's PoolingTask has no "reward" (it was renamed token_classify), so it is refused."""
    task = body.get("task")
    if task not in POOLING_TASKS:
        raise BadRequest(f"task {task!r} is not supported by this model; use token_classify")
    if body.get("messages") is not None:
        messages = body["messages"]
        if not isinstance(messages, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
        ):
            raise BadRequest("`messages` must be a list of {role, content} objects")
        return ["\n".join(m["content"] for m in messages)]
    if body.get("input") is None:
        raise BadRequest("either `input` or `messages` is required")
    texts, _ = _texts(body, "input", what="inputs")
    return texts
