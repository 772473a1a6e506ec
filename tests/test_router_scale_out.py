"""Scale-out for real on CPU: `rebase serve policy --replicas 2 --engine sim` starts two
simulator workers behind the real SGLang router (the `sglang-router` dev dependency), two
simulator reward servers are given to `rebase search` as two URLs, and one policy worker and
one reward server are killed mid-run. The run completes with every problem done and the same
tree as an uninterrupted run against one policy and one reward simulator. The workers imitate
SGLang with --enable-deterministic-inference (seeds honoured), what a reproducible search runs
behind the router; the client identifies them through the router and, since the router refuses
a /generate batch, asks one child per request."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from rebase_cli.sim.spawn import SpawnedSimulator, spawn
from tests.search_helpers import (
    _data_env,
    diff_runs,
    dump_run,
    node_count,
    query,
    rebase,
    run_ids,
    start_rebase,
    wait_until,
)

BUDGET, LIMIT, SEED = 8, 8, 7
LATENCY = ("--base-ms", "40")  # long enough a run to kill servers in the middle of it


def reward_server() -> SpawnedSimulator:
    return spawn(
        ["--role", "reward", "--port", "0", "--dataset", "gsm8k", *LATENCY], env=_data_env()
    )


def uninterrupted_reference(db: Path) -> dict[int, dict]:
    """The same search against one deterministic-SGLang policy simulator and one reward
    simulator, nothing killed, asked one child per request as the router plan does."""
    args = ["--port", "0", "--dataset", "gsm8k"]
    with (
        spawn(["--role", "policy", "--flavour", "sglang-deterministic", *args], env=_data_env())
        as policy,
        spawn(["--role", "reward", *args], env=_data_env()) as reward,
    ):  # fmt: skip
        done = rebase(
            db,
            *("search", "--dataset", "gsm8k", "--budget", str(BUDGET), "--limit", str(LIMIT)),
            *("--seed", str(SEED), "--policy", policy.url, "--reward", reward.url),
            *("--samples-per-request", "1"),
        )
    assert done.returncode == 0, done.stdout + done.stderr
    return dump_run(db, run_ids(db)[-1])


def group_workers(log: str) -> dict[int, int]:
    """Worker index → pid, from the group supervisor's log lines."""
    return {int(i): int(pid) for i, pid in re.findall(r"rebase-group: worker (\d+) pid (\d+)", log)}


def test_router_and_reward_urls_survive_losing_one_server_of_each(tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    expected = uninterrupted_reference(tmp_path / "reference.db")
    served = rebase(
        db,
        *("serve", "policy", "--engine", "sim", "--replicas", "2", "--port", "0", "--detach"),
        *("--", "--flavour", "sglang-deterministic", "--max-running", "64", *LATENCY),
        timeout=120,
    )
    assert served.returncode == 0, served.stdout + served.stderr
    assert "sim+router" in served.stderr and "model sim-policy" in served.stderr
    workers: dict[int, int] = {}
    try:
        status = json.loads(rebase(db, "serve", "status", "--json").stdout)
        (group,) = status
        assert group["engine"] == "sim+router" and group["healthy"] is True
        log_path = Path(group["log_path"])
        workers = group_workers(log_path.read_text())
        assert sorted(workers) == [0, 1]

        with reward_server() as doomed, reward_server() as survivor:
            search = start_rebase(
                db,
                *("search", "--dataset", "gsm8k", "--budget", str(BUDGET)),
                *("--limit", str(LIMIT), "--seed", str(SEED), "--concurrency", "4"),
                *("--policy", group["url"], "--reward", doomed.url, "--reward", survivor.url),
                logs=tmp_path / "logs",
            )
            # Kill once a few levels are committed, far from the end of the run.
            wait_until(lambda: node_count(db) >= 40 or search.process.poll() is not None)
            assert search.process.poll() is None, search.output()
            os.kill(workers[0], signal.SIGKILL)
            doomed.process.send_signal(signal.SIGKILL)
            done_at_kill = node_count(db)
            code = search.wait(timeout=300)
            assert code == 0, search.output()
        assert done_at_kill < sum(len(p["nodes"]) for p in expected.values())

        run_id = run_ids(db)[-1]
        statuses = query(db, "SELECT status FROM problem WHERE run_id = ?", (run_id,))
        assert [s for (s,) in statuses] == ["done"] * LIMIT
        assert diff_runs(expected, dump_run(db, run_id)) == []

        (capabilities,) = query(db, "SELECT capabilities_json FROM run WHERE id = ?", (run_id,))
        stored = json.loads(capabilities[0])
        # Identified through the router, and asked one child per request there.
        assert stored["server"] == "sglang-deterministic" and stored["reproducible"] is True
        assert (
            stored["sampling_plan"] == "/v1/completions, one request per child, seed + i per child"
        )
        reward_figures = stored["reward_servers"]
        assert reward_figures[doomed.url]["outages"] == 1
        assert reward_figures[doomed.url]["problems_moved_away"] >= 1
        assert reward_figures[survivor.url]["problems"] == LIMIT

        # The capacity is the router's workers' together (each says 64 in /server_info).
        assert "4 problems at once: the policy server runs 128 requests" in search.stdout
        # The figures reach the search's summary and the report.
        assert f"reward server {doomed.url}: " in search.stdout
        assert f"reward server {doomed.url} marked down" in search.stderr  # said when it happened
        report = json.loads(rebase(db, "report", f"run-{run_id}", "--format", "json").stdout)
        rows = {(r["role"], r["url"]): r for r in report["runs"][0]["servers"]}
        assert rows[("reward", doomed.url)]["outages"] == 1
        assert rows[("reward", survivor.url)]["requests"] > 0

        # The group noticed its worker's death and still serves through the other one.
        assert "worker 0 at" in log_path.read_text() and "exited" in log_path.read_text()
        after = json.loads(rebase(db, "serve", "status", "--json").stdout)
        assert after[0]["healthy"] is True
        # The router's own health checks take the dead worker out (3 failed checks, 5 s apart).
        dead_url = re.search(r"worker 0 pid \d+ at (\S+)", log_path.read_text()).group(1)

        def router_dropped_it() -> bool:
            (state,) = json.loads(rebase(db, "serve", "status", "--json").stdout)
            return {w["url"]: w["healthy"] for w in state["workers"]}.get(dead_url) is False

        wait_until(router_dropped_it, timeout=60, every=1)
        table = rebase(db, "serve", "status").stdout
        assert "(1/2 workers)" in table
    finally:
        stopped = rebase(db, "serve", "stop", "policy")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    for pid in workers.values():
        assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes: its parent (the supervisor) has exited.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
