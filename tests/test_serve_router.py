"""`rebase serve policy --replicas / --worker-urls`: what is refused, and a router joining
servers that are already running (which `serve stop` must leave running)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from rebase_cli.serving.launchers import ServeSpec
from rebase_cli.serving.router import GroupLauncher, GroupPlan
from rebase_cli.sim.spawn import spawn
from tests.search_helpers import _data_env, rebase


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reward", "--engine", "sim", "--replicas", "2"], "fronts only policy servers"),
        (["policy", "--engine", "sim", "--replicas", "2", "--api-key", "k"], "--api-key"),
        (["policy", "--engine", "sim", "--replicas", "0"], "--replicas must be at least 1"),
    ],
)
def test_refused_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = rebase(tmp_path / "rebase.db", "serve", *args, "--port", "0", "--detach")
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert json.loads(rebase(tmp_path / "rebase.db", "serve", "status", "--json").stdout) == []


def test_the_plan_on_the_command_line_never_holds_the_api_key() -> None:
    spec = ServeSpec(role="policy", engine="sglang", model="m", tp=2, api_key="secret", port=1)
    plan = GroupLauncher(None, 0, ["http://a:1"]).plan(spec)
    assert "secret" not in plan.to_json()
    again = GroupPlan.from_json(plan.to_json())
    assert again.worker.api_key is None and again.worker.tp == 2
    assert again.worker_urls == ("http://a:1",)


def test_worker_urls_join_running_servers_and_stop_leaves_them(tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    # SGLang-flavoured workers: the router reads their model from their /server_info.
    args = ["--role", "policy", "--port", "0", "--dataset", "gsm8k", "--flavour", "sglang"]
    with spawn(args, env=_data_env()) as first, spawn(args, env=_data_env()) as second:
        served = rebase(
            db,
            *("serve", "policy", "--worker-urls", f"{first.url},{second.url}"),
            *("--port", "0", "--detach"),
            timeout=120,
        )
        assert served.returncode == 0, served.stdout + served.stderr
        try:
            (group,) = json.loads(rebase(db, "serve", "status", "--json").stdout)
            assert group["engine"] == "external+router"
            assert group["model"] == "sim-policy" and group["healthy"] is True
            # `rebase search` finds the registered router as its policy server.
            found = rebase(
                db, "search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2",
                "--reward", "sim", "--json",
            )  # fmt: skip
            assert found.returncode == 0, found.stdout + found.stderr
            assert json.loads(found.stdout)["done"] == 2
        finally:
            stopped = rebase(db, "serve", "stop", "policy")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert first.process.poll() is None and second.process.poll() is None


def test_slurm_example_is_valid_bash_and_uses_existing_flags() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "slurm-multinode.sbatch"
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    text = script.read_text()
    serve_help = rebase(Path("/nonexistent/x.db"), "serve", "policy", "--help").stdout
    search_help = rebase(Path("/nonexistent/x.db"), "search", "--help").stdout
    for flag in ("--worker-urls", "--host", "--port", "--detach", "--timeout", "--model"):
        assert flag in text and flag in serve_help
    for flag in ("--reward", "--policy", "--concurrency", "--budget", "--dataset"):
        assert flag in text and flag in search_help


def test_a_worker_that_cannot_start_fails_the_group_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "rebase.db"
    done = rebase(
        db, "serve", "policy", "--engine", "sim", "--replicas", "2", "--port", "0", "--detach",
        "--", "--no-such-flag",
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "exited with code 1 during start-up" in done.stderr
    assert "worker 0 exited with code 2 during start-up" in done.stderr  # the log tail says why
    assert json.loads(rebase(db, "serve", "status", "--json").stdout) == []
    log = Path(re.search(r"\(log: (\S+)\)", done.stderr).group(1)).read_text()
    pids = [int(p) for p in re.findall(r"rebase-group: worker \d+ pid (\d+)", log)]
    assert len(pids) == 2
    for pid in pids:  # the supervisor stopped (and reaped) every worker it started
        assert not Path(f"/proc/{pid}").exists()


def test_simulator_workers_behind_the_router_imitate_sglang() -> None:
    """The router reads each worker's model from /server_info, which only the SGLang flavours
    serve: a default simulator worker (vLLM-like) would register as model `unknown`."""
    from rebase_cli.serving import group, launchers

    sim = launchers.get_launcher("sim")
    # ... as `rebase serve` starts SGLang: the queue by priority (clients.queue_priority).
    plain = ServeSpec(role="policy", engine="sim", port=1)
    assert group.worker_command(sim, plain)[-3:] == [
        "--flavour",
        "sglang",
        "--enable-priority-scheduling",
    ]
    deterministic = ServeSpec(role="policy", engine="sim", port=1, deterministic=True)
    assert group.worker_command(sim, deterministic)[-3:] == [
        "--flavour",
        "sglang-deterministic",
        "--enable-priority-scheduling",
    ]
    assert "--flavour" not in group.worker_command(
        launchers.get_launcher("sglang"), ServeSpec(role="policy", engine="sglang", model="m")
    )
