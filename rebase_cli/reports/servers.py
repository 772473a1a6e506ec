"""Per-server figures of a run whose policy or reward was served by several URLs.

`rebase search` stores them in `run.capabilities_json` under `policy_servers` and
`reward_servers` (see clients.pool); one server per role stores none, the run's own counters
being that server's figures. They describe the latest session of the run (a resumed run
counts its last session only).
"""

from __future__ import annotations

import json

from rebase_cli.records import RunRecord

FIGURES = ("requests", "failed_attempts", "tokens", "outages", "problems_moved_away")


def server_rows(run: RunRecord) -> list[dict]:
    """One row per server: role, url and FIGURES, policy servers first."""
    try:
        capabilities = json.loads(run.capabilities_json or "{}")
    except ValueError:
        return []
    rows = []
    for role in ("policy", "reward"):
        servers = capabilities.get(f"{role}_servers") if isinstance(capabilities, dict) else None
        if not isinstance(servers, dict):
            continue
        for url, figures in servers.items():
            if isinstance(figures, dict):
                rows.append(
                    {"role": role, "url": url, **{k: int(figures.get(k) or 0) for k in FIGURES}}
                )
    return rows
