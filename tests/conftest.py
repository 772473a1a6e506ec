"""Shared fixtures: a fresh database, the shared benchmark data, an isolated user cache."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from rebase_cli.store.database import Database

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job of a non-interactive shell (`scripts/test &`,
    `nohup`) inherits SIGINT ignored, and every child it starts would too, so the tests that
    stop a search with Ctrl-C could not. The suite takes Python's default back; children then
    start with SIGINT at its default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Each test gets its own user cache; REBASE_DATA_DIR points at the shared data unless the
    environment already set it; a stray REBASE_DB never leaks into a test."""
    monkeypatch.setenv("REBASE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    if not os.environ.get("REBASE_DATA_DIR"):
        monkeypatch.setenv("REBASE_DATA_DIR", str(SHARED_DATA))
    monkeypatch.delenv("REBASE_DB", raising=False)


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.open(tmp_path / "test.db")
    yield database
    database.close()
