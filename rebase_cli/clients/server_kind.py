"""What kind of policy server a URL is, read from the routes only that kind serves.

- SGLang serves `GET /server_info` with its arguments (`enable_deterministic_inference`) and
  `version`: `sglang` or `sglang-deterministic`. It also says how many requests it runs at
  once (0.5.23: `internal_states`, one per data-parallel rank, each with
  `effective_max_running_requests_per_dp`; else the `max_running_requests` argument): the
  server's capacity, from which the search sizes its default concurrency. Its arguments
  also say whether it orders its queue by request priority (`clients.queue_priority`).
- vLLM serves `GET /version`: `vllm`.
- Anything else is a plain OpenAI-compatible server: `openai`.

- The SGLang router (sglang-router) serves none of these; its `GET /get_server_info` says
  `router_manager` and its `GET /workers` lists the servers behind it: the first of them is
  asked instead (a router fronts replicas of one kind, so the capacity is its times theirs).
  Requests through the router carry no priority: it is not known to pass one on.

A route the server does not have answers 404 (or 405); that is an answer, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import openai

from rebase_cli.clients.queue_priority import QueuePriority, queue_priority_from_server_info
from rebase_cli.clients.transport import Caller, parse_json

SERVER_KINDS = ("sglang", "sglang-deterministic", "vllm", "openai")
ABSENT = "null"  # the body standing for "route not served"


@dataclass(frozen=True)
class ServerKind:
    """A policy server's kind and version; `detected` is False when the user named it."""

    kind: str
    version: str | None = None
    detected: bool = True
    behind_router: bool = False  # reached through the SGLang router (no /generate batches)
    capacity: int | None = None  # requests the server(s) run at once; None: not said
    priority: QueuePriority | None = None  # its queue order by priority; None: first come


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def capacity_from_server_info(info: Any) -> int | None:
    """The requests an SGLang server runs at once, from its /server_info body (None if it does
    not say): the sum of its data-parallel ranks' effective limits, else the
    `max_running_requests` argument times `dp_size`."""
    if not isinstance(info, dict):
        return None
    states = info.get("internal_states")
    if isinstance(states, list) and states:
        ranks = [
            _positive(s.get("effective_max_running_requests_per_dp"))
            for s in states
            if isinstance(s, dict)
        ]
        if ranks and all(rank is not None for rank in ranks):
            return sum(ranks)  # type: ignore[arg-type]
    limit = _positive(info.get("max_running_requests"))
    return None if limit is None else limit * (_positive(info.get("dp_size")) or 1)


def kind_from_server_info(info: Any) -> str | None:
    """`sglang-deterministic`/`sglang` from an SGLang /server_info body; None if it is not one."""
    if not isinstance(info, dict) or "version" not in info:
        return None
    return "sglang-deterministic" if info.get("enable_deterministic_inference") else "sglang"


async def _get(endpoint: Caller, path: str, base: str | None = None) -> Any:
    """The JSON of GET `path` (at `base`, default the endpoint's server), or None when the
    server does not serve it."""

    async def send() -> str:
        server = endpoint.current()  # one server of a pool
        try:
            return await server.client.get((base or server.url) + path, cast_to=str)
        except (openai.NotFoundError, openai.UnprocessableEntityError):
            return ABSENT
        except openai.APIStatusError as exc:
            if exc.status_code == 405:
                return ABSENT
            raise

    value, _ = await endpoint.call(path, send, lambda text: parse_json(text) if text else None)
    return value


async def identify(endpoint: Caller) -> ServerKind:
    """Ask the server what it is (at most two GET requests; three more behind a router). The
    servers of a pool are taken to be alike: one is asked, and the capacity is theirs."""
    found = await _identify_at(endpoint, None)
    if found.kind != "openai":
        if found.capacity is None:
            return found
        return replace(found, capacity=found.capacity * endpoint.server_count)
    workers = await _router_workers(endpoint)
    if not workers:
        return found
    behind = await _identify_at(endpoint, workers[0])
    capacity = None if behind.capacity is None else behind.capacity * len(workers)
    return ServerKind(behind.kind, behind.version, behind_router=True, capacity=capacity)


async def _identify_at(endpoint: Caller, base: str | None) -> ServerKind:
    info = await _get(endpoint, "/server_info", base)
    kind = kind_from_server_info(info)
    if kind is not None:
        return ServerKind(
            kind,
            str(info.get("version")),
            capacity=capacity_from_server_info(info),
            priority=queue_priority_from_server_info(info),
        )
    version = await _get(endpoint, "/version", base)
    if isinstance(version, dict) and isinstance(version.get("version"), str):
        return ServerKind("vllm", version["version"])
    return ServerKind("openai")


async def _router_workers(endpoint: Caller) -> list[str]:
    """The URLs of the workers behind an SGLang router ([] if it is not one)."""
    info = await _get(endpoint, "/get_server_info")
    if not isinstance(info, dict) or not info.get("router_manager"):
        return []
    listing = await _get(endpoint, "/workers")
    workers = listing.get("workers") if isinstance(listing, dict) else None
    urls = [w.get("url") for w in workers or [] if isinstance(w, dict)]
    return [u for u in urls if isinstance(u, str) and u.startswith("http")]
