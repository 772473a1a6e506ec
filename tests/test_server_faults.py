"""Server faults: a simulator that fails some requests on purpose, and one that dies mid-run.

Retries must be invisible in the results: a run that met 5xx answers, hangs past the client
timeout and malformed bodies ends with exactly the trees of a fault-free run (the simulator's
answers are a pure function of the request), and only the retry counters tell the story.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.search_helpers import (
    diff_runs,
    dump_run,
    integrity,
    node_count,
    port_of,
    query,
    rebase,
    reference_run,
    run_status,
    search_args,
    start_rebase,
    start_simulator,
    subset,
    wait_until,
)

BUDGET = 8
LIMIT = 12
REFERENCE_LIMIT = 32  # shared with the torture test: one reference run serves both
FAULTS = (
    # 5% HTTP 5xx in total, 1% hangs past the client's 1 s timeout, 1% malformed bodies, on
    # every model route (the policy's /v1/completions and the PRM's /v1/score alike).
    *("--fault-500", "0.025", "--fault-503", "0.025"),
    *("--fault-hang", "0.01", "--hang-seconds", "5"),
    *("--fault-malformed", "0.01", "--fault-seed", "3"),
)


@pytest.fixture
def expected(tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict]:
    full = reference_run(tmp_path_factory.getbasetemp(), budget=BUDGET, limit=REFERENCE_LIMIT)
    return subset(full, range(LIMIT))


def sim_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/sim/stats", timeout=10) as response:
        return json.load(response)


def retries(db: Path) -> int:
    return query(db, "SELECT sum(retries) FROM problem")[0][0]


def check_retries(db: Path) -> int:
    """Retries of the server check `rebase search` ran before the run (stored in the run)."""
    capabilities = json.loads(query(db, "SELECT capabilities_json FROM run")[0][0] or "{}")
    return capabilities.get("check", {}).get("retries", 0)


def test_faulty_server_run_completes_with_the_fault_free_trees(
    expected: dict[int, dict], tmp_path: Path
) -> None:
    db = tmp_path / "rebase.db"
    with start_simulator(*FAULTS) as sim:
        done = rebase(
            db,
            *search_args(
                sim.url,
                budget=BUDGET,
                limit=LIMIT,
                concurrency=LIMIT,
                extra=("--request-timeout", "1"),
            ),
        )
        injected = sim_stats(sim.url)["faults"]
    print(f"\nfaults injected {injected}; retries {retries(db)}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{LIMIT}/{LIMIT} problems done, 0 failed" in done.stdout
    assert all(count > 0 for count in injected.values()), injected
    assert run_status(db, 1) == "done"
    assert diff_runs(expected, dump_run(db, 1)) == []  # no problem lost, nothing changed
    # Every injected fault cost at least one retry (a hang: a timeout, then a retry).
    assert retries(db) + check_retries(db) >= sum(injected.values())
    report = rebase(db, "report", "run-1", "--format", "json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["runs"][0]["compute"]["retries"] == retries(db)
    assert integrity(db) == "ok"


def test_server_that_dies_and_comes_back_makes_problems_wait(
    expected: dict[int, dict], tmp_path: Path
) -> None:
    db = tmp_path / "rebase.db"
    sim = start_simulator("--base-ms", "20")
    port = port_of(sim)
    args = search_args(sim.url, budget=BUDGET, limit=LIMIT, extra=("--server-wait", "60"))
    child = start_rebase(db, *args, logs=tmp_path / "logs")
    try:
        wait_until(lambda: node_count(db) >= 60 or child.process.poll() is not None)
        sim.process.kill()  # the server dies: in-flight requests break, new ones are refused
        sim.process.wait(10)
        time.sleep(3)
        assert child.process.poll() is None, child.output()  # the search waits
        at_restart = node_count(db)
        sim = start_simulator("--base-ms", "20", port=port)
        assert child.wait(120) == 0, child.output()
    finally:
        child.kill()
        sim.stop()
    print(f"\n{at_restart} nodes when the server came back; retries {retries(db)}")
    assert node_count(db) > at_restart
    assert f"{LIMIT}/{LIMIT} problems done, 0 failed" in child.stdout
    assert run_status(db, 1) == "done"
    assert retries(db) > 0
    assert diff_runs(expected, dump_run(db, 1)) == []


def test_server_that_stays_down_stops_the_run_resumably(
    expected: dict[int, dict], tmp_path: Path
) -> None:
    db = tmp_path / "rebase.db"
    sim = start_simulator("--base-ms", "20")
    port = port_of(sim)
    args = search_args(sim.url, budget=BUDGET, limit=LIMIT, extra=("--server-wait", "2"))
    child = start_rebase(db, *args, logs=tmp_path / "logs")
    try:
        wait_until(lambda: node_count(db) >= 60 or child.process.poll() is not None)
        sim.stop()
        code = child.wait(120)
    finally:
        child.kill()
    assert code == 1, child.output()
    assert "Traceback" not in child.output()
    errors = [line for line in child.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, child.stderr
    print(f"\n{errors[0]}")
    assert f"server http://127.0.0.1:{port} unreachable" in errors[0]
    assert f"rebase --db {db} search --run run-1" in errors[0]
    assert run_status(db, 1) == "failed"
    assert integrity(db) == "ok"

    with start_simulator(port=port) as sim:
        resumed = rebase(db, "search", "--run", "run-1", "--policy", sim.url, "--reward", sim.url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run-1 (failed)" in resumed.stdout
    assert run_status(db, 1) == "done"
    assert diff_runs(expected, dump_run(db, 1)) == []


def test_run_whose_every_problem_failed_is_not_done_and_resume_retries_it(
    expected: dict[int, dict], tmp_path: Path
) -> None:
    """Fewer problems than the abort threshold, all failing on a dead server: the run must not
    be marked done (a done run is invisible to `--resume`), and `--resume` retries them."""
    db = tmp_path / "rebase.db"
    # 200 ms a request: a problem needs several levels of two requests each, so none can
    # finish between the poll that sees the first levels and the server's stop.
    sim = start_simulator("--base-ms", "200")
    port = port_of(sim)
    few = search_args(sim.url, budget=BUDGET, limit=3, extra=("--server-wait", "1"))
    child = start_rebase(db, *few, logs=tmp_path / "logs")
    try:
        wait_until(lambda: node_count(db) >= 10 or child.process.poll() is not None)
        sim.stop()
        child.wait(120)
    finally:
        child.kill()
    assert query(db, "SELECT DISTINCT status FROM problem") == [("failed",)], child.output()
    assert run_status(db, 1) == "failed"

    with start_simulator(port=port) as sim:
        resumed = rebase(db, *few, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run-1" in resumed.stdout
    assert run_status(db, 1) == "done"
    assert diff_runs(subset(expected, range(3)), dump_run(db, 1)) == []
