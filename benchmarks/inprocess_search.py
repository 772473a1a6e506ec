"""One in-process search, measured, for `bench_orchestrator.py --baseline`: run as a child
process whose PYTHONPATH names the source tree under test, so the same measurement runs on
this checkout and on a git worktree of an earlier commit.

    PYTHONPATH=TREE python benchmarks/inprocess_search.py DB URL PROBLEMS BUDGET CONCURRENCY

Imports happen before the clock starts: the figures are the search alone (`run_search`
through the service layer with no progress display, as the CLI calls it, the pre-run check
skipped), on the event loop the commands use. Prints one JSON object: nodes, requests, our
CPU seconds (`time.process_time`, all threads), wall seconds and the tree the search ran
(`rebase_cli.__file__`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path


def main() -> None:
    db_path, url = Path(sys.argv[1]), sys.argv[2]
    problems, budget, concurrency = (int(value) for value in sys.argv[3:6])

    import rebase_cli
    from rebase_cli.runner.context import NoEvents
    from rebase_cli.runner.service import EndpointRequest, run_search
    from rebase_cli.runner.setup import RunRequest

    try:  # this checkout: run totals live with the other aggregates
        from rebase_cli.store.aggregates import run_totals
    except ImportError:  # a baseline from before store/repository.py was split
        from rebase_cli.store.repository import run_totals
    from rebase_cli.store.database import Database

    try:  # the event loop the commands run on (uvloop)
        from rebase_cli.runner.event_loop import run
    except ImportError:  # a baseline from before the commands had their own
        run = asyncio.run

    cpu0, wall0 = time.process_time(), time.perf_counter()
    db = Database.open(db_path)
    request = RunRequest(
        dataset="gsm8k",
        overrides={"budget": budget, "limit": problems, "concurrency": concurrency, "seed": 0},
    )
    endpoints = EndpointRequest(policy=url, reward=url, check=False)  # as --skip-check
    prepared, outcome = run(run_search(db, request, endpoints, lambda _: NoEvents()))
    totals = run_totals(db, prepared.run.id)
    db.close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if outcome.aborted or totals["failed"]:
        raise SystemExit(f"search failed: {outcome.aborted or outcome.failures[:3]}")
    print(
        json.dumps(
            {
                "tree": str(Path(rebase_cli.__file__).parent.parent),
                "nodes": totals["nodes"],
                "requests": totals["policy_requests"] + totals["reward_requests"],
                "cpu_seconds": cpu,
                "wall_seconds": wall,
            }
        )
    )


if __name__ == "__main__":
    main()
