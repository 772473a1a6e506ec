"""Where files live: the database, the user cache and the dataset folders."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

DB_ENV = "REBASE_DB"
DATA_DIR_ENV = "REBASE_DATA_DIR"
CACHE_DIR_ENV = "REBASE_CACHE_DIR"
DEFAULT_DB_NAME = "rebase.db"


def default_db_path() -> Path:
    """`$REBASE_DB` if set, else `./rebase.db` in the current folder."""
    env = os.environ.get(DB_ENV)
    return Path(env) if env else Path.cwd() / DEFAULT_DB_NAME


def user_cache_dir() -> Path:
    """`$REBASE_CACHE_DIR` if set, else the platform's user cache folder for rebase."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else Path(platformdirs.user_cache_dir("rebase-cli"))


def data_dir_from_env() -> Path | None:
    """`$REBASE_DATA_DIR` as a path, or None when unset."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None
