"""A run's totals as the plain mapping the search summary line and its JSON print."""

from __future__ import annotations

from dataclasses import asdict

from rebase_cli.store.database import Database
from rebase_cli.store.reader import RunReader


def run_totals(db: Database, run_id: int) -> dict[str, int]:
    """`RunReader.totals` by key: problem counts by status, node count and the summed
    token/request/retry counters of a run."""
    return asdict(RunReader(db).totals(run_id))
