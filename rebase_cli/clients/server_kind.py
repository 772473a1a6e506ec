"""What kind of policy server a URL is, read from the routes only that kind serves.

- SGLang serves `GET /server_info` with its arguments (`enable_deterministic_inference`) and
  `version`: `sglang` or `sglang-deterministic`.
- vLLM serves `GET /version`: `vllm`.
- Anything else is a plain OpenAI-compatible server: `openai`.

A route the server does not have answers 404 (or 405); that is an answer, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import openai

from rebase_cli.clients.transport import Endpoint, parse_json

SERVER_KINDS = ("sglang", "sglang-deterministic", "vllm", "openai")
ABSENT = "null"  # the body standing for "route not served"


@dataclass(frozen=True)
class ServerKind:
    """A policy server's kind and version; `detected` is False when the user named it."""

    kind: str
    version: str | None = None
    detected: bool = True


def kind_from_server_info(info: Any) -> str | None:
    """`sglang-deterministic`/`sglang` from an SGLang /server_info body; None if it is not one."""
    if not isinstance(info, dict) or "version" not in info:
        return None
    return "sglang-deterministic" if info.get("enable_deterministic_inference") else "sglang"


async def _get(endpoint: Endpoint, path: str) -> Any:
    """The JSON of GET `path`, or None when the server does not serve it."""

    async def send() -> str:
        try:
            return await endpoint.client.get(endpoint.url + path, cast_to=str)
        except (openai.NotFoundError, openai.UnprocessableEntityError):
            return ABSENT
        except openai.APIStatusError as exc:
            if exc.status_code == 405:
                return ABSENT
            raise

    value, _ = await endpoint.call(path, send, lambda text: parse_json(text) if text else None)
    return value


async def identify(endpoint: Endpoint) -> ServerKind:
    """Ask the server what it is (at most two GET requests)."""
    info = await _get(endpoint, "/server_info")
    kind = kind_from_server_info(info)
    if kind is not None:
        return ServerKind(kind, str(info.get("version")))
    version = await _get(endpoint, "/version")
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        return ServerKind("vllm", version["version"])
    return ServerKind("openai")
