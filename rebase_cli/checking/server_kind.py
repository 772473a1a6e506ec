"""Which server answers at an endpoint (kind and version), from the routes each family serves."""

from __future__ import annotations

from typing import Any

import openai

from rebase_cli.checking.findings import OK, Finding
from rebase_cli.clients.retry import MalformedResponse
from rebase_cli.clients.transport import Endpoint, parse_json


async def get_json(endpoint: Endpoint, path: str) -> Any | None:
    """GET `path` once; its JSON, or None when the route is not served or not JSON."""
    # One server of a role given several URLs: the first live one (they serve one model).
    server = endpoint.current()
    try:
        text = await server.client.get(server.url + path, cast_to=str)
        return parse_json(text)
    except (openai.APIError, MalformedResponse):
        return None


async def server_kind(endpoint: Endpoint) -> str:
    """What answers at `endpoint`, from the routes each server family serves: the simulator's
    /model_info says `simulated`; our reward server's and SGLang's /server_info carry `engine`
    or `version`; vLLM serves /version."""
    info = await get_json(endpoint, "/model_info")
    if isinstance(info, dict) and info.get("simulated"):
        return "rebase simulator (SIMULATED)"
    info = await get_json(endpoint, "/server_info")
    if isinstance(info, dict):
        if info.get("engine") == "rebase-transformers":
            return f"rebase transformers reward server {info.get('version', '?')}"
        if isinstance(info.get("version"), str):
            return f"SGLang {info['version']}"
    info = await get_json(endpoint, "/version")
    if isinstance(info, dict) and isinstance(info.get("version"), str):
        return f"vLLM {info['version']}"
    return "OpenAI-compatible server (kind and version not reported)"


async def kind_finding(role: str, endpoint: Endpoint, model: str | None) -> Finding:
    kind = await server_kind(endpoint)
    return Finding(
        f"{role}.server", OK, f"{kind} at {endpoint.current().url}, model {model or '?'}"
    )
