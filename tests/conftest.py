"""Shared fixtures: a fresh database, the shared benchmark data, an isolated user cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rebase_cli.store.database import Database

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


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
