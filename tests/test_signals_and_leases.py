"""What users and job schedulers do to a running search: SIGTERM and SIGHUP (stop like Ctrl-C),
kill -9 and an instant resume, a resume or a delete while another process searches.

Every search is a real `rebase` child process on a real SQLite file, with the in-process
simulator (`--policy sim --reward sim`); the printed resume command is run exactly as printed.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.errors import RunLockedError
from rebase_cli.runner.holder import holder_is_gone, lease_owner
from rebase_cli.serving.process import start_time
from rebase_cli.store.database import Database
from rebase_cli.store.leases import acquire_lease, live_lease
from rebase_cli.store.runs import create_run
from tests.search_helpers import (
    REBASE,
    CliProcess,
    cli_env,
    integrity,
    node_count,
    query,
    run_status,
    wait_until,
)
from tests.test_bad_input import snapshot

SIM = ["--policy", "sim", "--reward", "sim"]
# Long enough that the search is still running when the test acts on it.
LONG_SEARCH = ["search", "--dataset", "gsm8k", "--budget", "8", "--limit", "300",
               "--concurrency", "2", *SIM]  # fmt: skip


def env_without_db(db: Path, **extra: str) -> dict[str, str]:
    """A child environment where only `--db` on the command line names the database."""
    env = cli_env(db, **extra)
    env.pop("REBASE_DB")
    return env


def start(cwd: Path, env: dict[str, str], *args: str) -> CliProcess:
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    stamp = time.monotonic_ns()
    out, err = logs / f"{stamp}.out", logs / f"{stamp}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*REBASE, *args], cwd=cwd, env=env, stdout=stdout, stderr=stderr,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    return CliProcess(process, out, err)


def searched(db: Path, child: CliProcess, nodes: int) -> bool:
    """The child has committed `nodes` nodes, or has exited."""
    return (db.exists() and node_count(db) >= nodes) or child.process.poll() is not None


def run_printed(command: str, cwd: Path, env: dict[str, str]) -> CliProcess:
    """Run a command line the tool printed, word for word (`rebase` is this checkout's CLI)."""
    words = shlex.split(command)
    assert words[0] == "rebase", command
    return start(cwd, env, *words[1:])


# ------------------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_acts_like_ctrl_c_and_the_printed_resume_works(
    tmp_path: Path, signum: int
) -> None:
    db = tmp_path / "hint.db"
    env = env_without_db(db)
    child = start(tmp_path, env, "--db", "hint.db", *LONG_SEARCH)
    try:
        wait_until(
            lambda: (db.exists() and node_count(db) >= 40) or child.process.poll() is not None
        )
        child.process.send_signal(signum)
        code = child.wait(60)
    finally:
        child.kill()
    name = signal.Signals(signum).name
    assert code == 128 + signum, child.output()
    assert "Traceback" not in child.output()
    assert "problems done" in child.stdout  # the summary
    assert run_status(db, 1) == "interrupted"
    assert query(db, "SELECT lease_owner FROM run WHERE id = 1") == [(None,)]
    prefix = f"interrupted by {name}; resume with: "
    printed = [line for line in child.stderr.splitlines() if line.startswith(prefix)]
    assert printed == [f"{prefix}rebase --db hint.db search --run run-1"], child.stderr

    # The printed command, as printed, in the same folder: it finds hint.db (not ./rebase.db)
    # and the run's own endpoints (the simulator) without being told. A short limit is not
    # possible on a printed command, so stop it again once it has resumed.
    resumed = run_printed(printed[0].removeprefix(prefix), tmp_path, env)
    try:
        assert resumed.wait_for("resuming run-1 (interrupted)"), resumed.output()
        resumed.process.send_signal(signal.SIGTERM)
        assert resumed.wait(60) == 143, resumed.output()
    finally:
        resumed.kill()
    assert not (tmp_path / "rebase.db").exists()
    assert "SIMULATED" in resumed.stdout
    assert run_status(db, 1) == "interrupted"
    assert integrity(db) == "ok"


# ------------------------------------------------------------------------------- leases


def test_kill_9_then_an_instant_resume_takes_the_dead_holders_lease(tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    env = env_without_db(db, REBASE_LEASE_TTL="30")  # the default: it would block for 30 s
    child = start(tmp_path, env, "--db", str(db), *LONG_SEARCH)
    try:
        wait_until(
            lambda: (db.exists() and node_count(db) >= 40) or child.process.poll() is not None
        )
    finally:
        child.kill()
    (owner,) = query(db, "SELECT lease_owner FROM run WHERE id = 1")[0]
    assert owner is not None and f":{child.process.pid}:" in owner
    committed = node_count(db)
    resumed = start(tmp_path, env, "--db", str(db), "search", "--run", "run-1")
    try:
        assert resumed.wait_for("resuming run-1"), resumed.output()
        wait_until(lambda: node_count(db) > committed or resumed.process.poll() is not None)
        resumed.process.send_signal(signal.SIGTERM)
        assert resumed.wait(60) == 143, resumed.output()  # it searched, and stopped cleanly
    finally:
        resumed.kill()
    assert "retry in" not in resumed.output()


def test_a_live_holder_refuses_resume_and_delete_and_nothing_is_written(tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    env = env_without_db(db, REBASE_LEASE_TTL="30")
    child = start(tmp_path, env, "--db", str(db), *LONG_SEARCH)
    try:
        wait_until(
            lambda: (db.exists() and node_count(db) >= 10) or child.process.poll() is not None
        )
        # Frozen (SIGSTOP): alive, holding the lease, writing nothing meanwhile.
        child.process.send_signal(signal.SIGSTOP)
        before = snapshot(db)
        resume = CliRunner().invoke(app, ["--db", str(db), "search", "--run", "run-1", *SIM])
        assert resume.exit_code == 1, resume.output
        assert "being searched by another process" in resume.stderr
        assert f":{child.process.pid}:" in resume.stderr  # the holder's id names its pid
        delete = CliRunner().invoke(app, ["--db", str(db), "runs", "delete", "run-1", "--yes"])
        assert delete.exit_code == 1, delete.output
        assert "cannot delete: run-1 is being searched" in delete.stderr
        assert "Ctrl-C" in delete.stderr
        assert snapshot(db) == before
        child.process.send_signal(signal.SIGCONT)
        child.process.send_signal(signal.SIGTERM)
        assert child.wait(60) == 143, child.output()
    finally:
        child.process.send_signal(signal.SIGCONT)
        child.kill()
    assert "taken over" not in child.output()
    # Once the search has stopped, the delete goes through.
    delete = CliRunner().invoke(app, ["--db", str(db), "runs", "delete", "run-1", "--yes"])
    assert delete.exit_code == 0, delete.output
    assert query(db, "SELECT count(*) FROM run") == [(0,)]


def _dead_pid() -> int:
    """A pid that no process has (the highest pids are rarely in use; checked)."""
    for pid in range(4_194_000, 4_194_304):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            continue
    pytest.skip("no free pid found")


def test_holder_is_gone_only_for_a_dead_process_of_this_host() -> None:
    host = socket.gethostname()
    me = lease_owner()
    assert not holder_is_gone(me)
    parent = os.getppid()
    parent_start = start_time(parent).timestamp()
    assert not holder_is_gone(f"{host}:{parent}:{parent_start:.2f}:abcd")  # alive
    assert holder_is_gone(f"{host}:{parent}:{parent_start - 3600:.2f}:abcd")  # pid reused
    assert holder_is_gone(f"{host}:{_dead_pid()}:1700000000.00:abcd")  # exited
    assert not holder_is_gone(f"not-{host}:{_dead_pid()}:1700000000.00:abcd")  # another host
    assert not holder_is_gone(f"{host}:{_dead_pid()}:abcd")  # an id without a start time


def test_a_lease_held_on_another_host_is_still_waited_for(db: Database) -> None:
    from rebase_cli.store.models import Run

    run = create_run(
        db,
        Run(method="rebase", dataset="gsm8k", dataset_sha256="x", budget=4, config_json="{}",
            fingerprint="f", policy_url="sim", policy_model="m", reward_url="sim",
            reward_model="m", reward_protocol="score", seed=0),
    )  # fmt: skip
    assert run.id is not None
    other = f"elsewhere-{socket.gethostname()}:{_dead_pid()}:1700000000.00:abcd"
    acquire_lease(db, run.id, other, timedelta(seconds=30), holder_is_gone)
    with pytest.raises(RunLockedError, match="being searched") as refused:
        acquire_lease(db, run.id, lease_owner(), timedelta(seconds=30), holder_is_gone)
    assert "retry in" in (refused.value.hint or "")
    local_dead = f"{socket.gethostname()}:{_dead_pid()}:1700000000.00:abcd"
    acquire_lease(db, run.id, local_dead, timedelta(seconds=30), lambda owner: True)
    mine = lease_owner()
    acquire_lease(db, run.id, mine, timedelta(seconds=30), holder_is_gone)
    assert live_lease(db, run.id).owner == mine  # type: ignore[union-attr]


def test_a_write_in_a_thread_is_seen_to_its_end_when_cancelled_midway() -> None:
    """A signal landing while the lease is being taken (in a worker thread, which runs on) must
    not leave the run `running` under this process's lease: the caller learns of both."""
    import asyncio
    import threading

    from rebase_cli.runner.signals import finish_despite_cancel

    entered, release, wrote = threading.Event(), threading.Event(), []

    def write() -> None:
        entered.set()
        release.wait(5)
        wrote.append(True)

    async def main() -> bool:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def cancel_then_release() -> None:
            entered.wait(5)
            loop.call_soon_threadsafe(task.cancel)
            time.sleep(0.05)
            release.set()

        threading.Thread(target=cancel_then_release).start()
        return await finish_despite_cancel(asyncio.to_thread(write))

    assert asyncio.run(main()) is True
    assert wrote == [True]


def test_a_stopped_sweep_prints_how_to_resume_the_sweep(tmp_path: Path) -> None:
    db = tmp_path / "sweep.db"
    sweep = [arg if arg != "8" else "8,16" for arg in LONG_SEARCH]  # --budget 8,16: a sweep
    child = start(tmp_path, env_without_db(db), "--db", "sweep.db", *sweep, "--group", "g")
    try:
        wait_until(
            lambda: (db.exists() and node_count(db) >= 40) or child.process.poll() is not None
        )
        child.process.send_signal(signal.SIGTERM)
        code = child.wait(60)
    finally:
        child.kill()
    assert code == 128 + signal.SIGTERM, child.output()
    assert run_status(db, 1) == "interrupted"
    assert (
        "interrupted by SIGTERM; resume the sweep with: rebase --db sweep.db search --group g"
        in child.stderr.splitlines()
    ), child.stderr
