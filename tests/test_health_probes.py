"""Readiness and status probes never call a busy server dead, and never wait on SGLang's slow
`/health` when its instant `/ready` exists."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from rebase_cli.datasets import load_dataset
from rebase_cli.serving.health import BUSY, NOT_LISTENING, READY, check, is_healthy
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.inprocess import start_in_thread
from tests.http_fakes import Reply, ScriptedServer


@pytest.fixture
def busy_vllm():
    """A server without /ready whose /health answers only after 3 s (a busy engine)."""
    fake = ScriptedServer().start()
    fake.route("/health", lambda request: Reply.json({}, delay=3.0))
    yield fake
    fake.stop()


def test_a_busy_server_is_alive_not_down(busy_vllm):
    with httpx.Client(timeout=0.3) as client:
        assert check(client, busy_vllm.url) == BUSY
    assert is_healthy(busy_vllm.url, timeout=0.3) is True
    assert len(busy_vllm.requests_to("/ready")) == 2  # asked first, answered 404


def test_sglang_is_probed_on_ready_not_on_its_one_second_health():
    problems = load_dataset("gsm8k").problems[:2]
    config = SimConfig(role="policy", flavour="sglang", port=0, datasets=("gsm8k",))
    with start_in_thread(config, problems=problems) as sim:
        started = time.monotonic()
        assert is_healthy(sim.url, timeout=0.5) is True
        assert time.monotonic() - started < 0.5  # /health alone would take >= 1 s
        with httpx.Client(timeout=5) as client:
            assert check(client, sim.url) == READY


def test_loading_and_not_listening_are_not_ready():
    problems = load_dataset("gsm8k").problems[:2]
    config = SimConfig(role="policy", flavour="sglang", port=0, load_seconds=30)
    with start_in_thread(config, problems=problems) as sim:
        with httpx.Client(timeout=2) as client:
            assert check(client, sim.url) == "loading (HTTP 503)"
        assert is_healthy(sim.url) is False
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with httpx.Client(timeout=1) as client:
        assert check(client, f"http://127.0.0.1:{port}") == NOT_LISTENING
