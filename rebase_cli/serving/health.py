"""Readiness: poll the server until it says it is ready.

A server goes through three phases: not listening (connection refused), loading (SGLang
answers 503 until its model is loaded and warmed up) and ready (200). The probe asks
`GET /ready` first: SGLang answers it at once, while its `/health` runs a one-token generation
and takes at least a second (longer when the server is busy). Servers without `/ready` (vLLM,
`transformers serve`: 404) are asked `GET /health`. A server that accepted the connection but
did not answer in time is *busy*, never "down": it is alive, and a search may use it. Start-up
fails fast when the process exits, and times out otherwise; both errors carry the log tail
(set by the caller, who knows the log file).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from rebase_cli.errors import ServeError

PROBE_TIMEOUT_S = 5.0
READY = "ready"
BUSY = "busy (no answer in time)"
NOT_LISTENING = "not listening"
ABSENT_ROUTE = frozenset({404, 405})


class StartupError(ServeError):
    """A server that did not become ready. `log_tail` holds its last log lines once known."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.log_tail: list[str] = []
        self.log_path: Path | None = None


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def check(client: httpx.Client, url: str) -> str:
    """One probe: READY, "loading (HTTP 503)", BUSY or NOT_LISTENING (see the module doc)."""
    try:
        response = client.get(f"{url}/ready")
        if response.status_code in ABSENT_ROUTE:
            response = client.get(f"{url}/health")
    except httpx.ConnectTimeout:
        return NOT_LISTENING
    except httpx.TimeoutException:
        return BUSY
    except httpx.TransportError:
        return NOT_LISTENING
    if response.status_code == 200:
        return READY
    return f"loading (HTTP {response.status_code})"


def is_healthy(url: str, *, api_key: str | None = None, timeout: float = 2.0) -> bool:
    """A single probe: is `url` ready, or alive but too busy to answer within `timeout`?"""
    with httpx.Client(timeout=timeout, headers=_headers(api_key)) as client:
        return check(client, url) in (READY, BUSY)


def wait_until_healthy(
    url: str,
    *,
    timeout: float,
    exit_code: Callable[[], int | None],
    what: str = "server",
    api_key: str | None = None,
    interval: float = 0.2,
    on_progress: Callable[[str, float], None] | None = None,
) -> float:
    """Poll until the server is ready (`check`); return the seconds it took.

    `exit_code()` is checked before every probe: a process that exits is reported at once, not
    after the timeout. `on_progress(phase, elapsed)` is called after every probe."""
    started = time.monotonic()
    phase = NOT_LISTENING
    with httpx.Client(timeout=PROBE_TIMEOUT_S, headers=_headers(api_key)) as client:
        while True:
            elapsed = time.monotonic() - started
            code = exit_code()
            if code is not None:
                raise StartupError(
                    f"{what} exited with code {code} during start-up", "see its log lines above"
                )
            if elapsed >= timeout:
                raise StartupError(
                    f"{what} was not healthy after {timeout:g} s (last state: {phase})",
                    "see its log lines above; large models may need a longer --timeout",
                )
            phase = check(client, url)
            if phase == READY:
                return time.monotonic() - started
            if on_progress is not None:
                on_progress(phase, elapsed)
            time.sleep(min(interval, max(0.0, timeout - (time.monotonic() - started))))


def served_model_id(url: str, *, api_key: str | None = None) -> str | None:
    """The first model id of `url`/v1/models, or None when the server does not say."""
    try:
        with httpx.Client(timeout=PROBE_TIMEOUT_S, headers=_headers(api_key)) as client:
            response = client.get(f"{url}/v1/models")
        response.raise_for_status()
        data = response.json().get("data") or []
        return str(data[0]["id"]) if data else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return None
