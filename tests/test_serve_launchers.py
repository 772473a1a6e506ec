"""Command lines and pre-flight checks per engine (no process is started here)."""

from __future__ import annotations

import socket
import sys

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.errors import ServeError, UsageError
from rebase_cli.serving import launchers, net
from rebase_cli.serving.launchers import (
    PRIORITY_SCHEDULING_FLAGS,
    ServeSpec,
    SGLangLauncher,
    SimLauncher,
)

SGLANG = [sys.executable, "-m", "sglang.launch_server"]


def test_sglang_policy_command_line_is_exact() -> None:
    spec = ServeSpec(
        role="policy",
        engine="sglang",
        host="0.0.0.0",
        port=31000,
        model="EleutherAI/llemma_7b",
        tp=2,
        dp=4,
        mem_fraction=0.8,
        api_key="sk-secret",
        served_model_name="llemma",
        extra_args=("--chunked-prefill-size", "4096"),
    )
    assert SGLangLauncher().command(spec) == [
        *SGLANG,
        "--model-path", "EleutherAI/llemma_7b",
        "--host", "0.0.0.0",
        "--port", "31000",
        "--tp-size", "2",
        "--dp-size", "4",
        "--mem-fraction-static", "0.8",
        "--api-key", "sk-secret",
        "--served-model-name", "llemma",
        "--enable-priority-scheduling",
        "--disable-priority-preemption",
        "--default-priority-value", "0",
        "--chunked-prefill-size", "4096",
    ]  # fmt: skip


def test_sglang_reward_classify_adds_is_embedding_and_score_does_not() -> None:
    base = ServeSpec(role="reward", engine="sglang", port=30001, model="Skywork/Reward", tp=1)
    classify = SGLangLauncher().command(
        ServeSpec(**{**base.__dict__, "reward_protocol": "classify"})
    )
    assert classify == [
        *SGLANG,
        "--model-path", "Skywork/Reward",
        "--host", "127.0.0.1",
        "--port", "30001",
        "--tp-size", "1",
        "--is-embedding",
    ]  # fmt: skip
    # An LM-head PRM (score protocol, the default) is an ordinary generation model.
    assert SGLangLauncher().command(base) == classify[:-1]
    score = ServeSpec(**{**base.__dict__, "reward_protocol": "score"})
    assert SGLangLauncher().command(score) == classify[:-1]


def test_sim_command_line_serves_both_datasets() -> None:
    spec = ServeSpec(role="reward", engine="sim", port=4242, extra_args=("--noise", "0.1"))
    assert SimLauncher().command(spec) == [
        sys.executable, "-m", "rebase_cli.sim",
        "--role", "reward",
        "--host", "127.0.0.1",
        "--port", "4242",
        "--dataset", "gsm8k",
        "--dataset", "math500",
        "--noise", "0.1",
    ]  # fmt: skip


def test_redact_hides_api_keys_in_both_spellings() -> None:
    argv = ["x", "--api-key", "sk-1", "--port", "1", "--api-key=sk-2"]
    assert launchers.redact(argv) == ["x", "--api-key", "***", "--port", "1", "--api-key=***"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ServeSpec(role="policy", engine="sim", tp=2), "--tp is not supported by the sim engine"),
        (ServeSpec(role="policy", engine="sim", reward_protocol="score"), "applies only to"),
        (ServeSpec(role="reward", engine="sglang", dp=0), "--dp must be at least 1"),
        (ServeSpec(role="reward", engine="sglang", mem_fraction=1.5), "--mem-fraction"),
        (ServeSpec(role="reward", engine="sglang", deterministic=True), "only to `rebase serve"),
        (
            ServeSpec(role="policy", engine="transformers", deterministic=True),
            "--deterministic is not supported by the transformers engine",
        ),
    ],
)
def test_validate_rejects_options_that_cannot_work(spec: ServeSpec, message: str) -> None:
    launcher = launchers.get_launcher(spec.engine)
    with pytest.raises(UsageError, match=message):
        launchers.validate(spec, launcher)


def _environment(monkeypatch, *, sglang: bool, gpus: int | None) -> None:
    real_find_spec = launchers.importlib.util.find_spec
    monkeypatch.setattr(
        launchers.importlib.util,
        "find_spec",
        lambda name: (object() if sglang else None) if name == "sglang" else real_find_spec(name),
    )
    monkeypatch.setattr(launchers, "gpu_count", lambda use_torch=True: gpus)


def test_preflight_names_the_missing_piece_and_the_fix(monkeypatch) -> None:
    spec = ServeSpec(role="policy", engine="sglang", model="m")
    _environment(monkeypatch, sglang=False, gpus=None)
    with pytest.raises(ServeError) as no_sglang:
        SGLangLauncher().preflight(spec)
    assert "SGLang is not installed and no CUDA GPU found" in no_sglang.value.one_line()
    assert "pip install 'rebase-cli[sglang]'" in no_sglang.value.one_line()
    assert "--engine sim" in no_sglang.value.one_line()

    _environment(monkeypatch, sglang=True, gpus=0)
    with pytest.raises(ServeError, match="SGLang needs a CUDA GPU"):
        SGLangLauncher().preflight(spec)

    _environment(monkeypatch, sglang=True, gpus=2)
    with pytest.raises(ServeError, match="needs 4 GPUs, found 2"):
        SGLangLauncher().preflight(ServeSpec(**{**spec.__dict__, "tp": 2, "dp": 2}))
    with pytest.raises(UsageError, match="needs --model"):
        SGLangLauncher().preflight(ServeSpec(role="policy", engine="sglang"))
    with pytest.raises(UsageError, match="does not serve the pooling") as pooling:
        SGLangLauncher().preflight(
            ServeSpec(role="reward", engine="sglang", model="m", reward_protocol="pooling")
        )
    assert "vllm serve MODEL --runner pooling" in pooling.value.one_line()
    SGLangLauncher().preflight(ServeSpec(**{**spec.__dict__, "tp": 2}))  # fits: no error


def test_serve_sglang_without_gpu_prints_one_line_and_exits_1(tmp_path, monkeypatch) -> None:
    _environment(monkeypatch, sglang=False, gpus=None)
    result = CliRunner().invoke(
        app, ["--db", str(tmp_path / "r.db"), "serve", "policy", "--engine", "sglang"]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: SGLang is not installed")
    assert "pip install 'rebase-cli[sglang]'" in lines[0]
    assert not (tmp_path / "r.db.logs").exists()  # nothing was started


@pytest.mark.skipif(
    launchers.importlib.util.find_spec("sglang") is not None, reason="sglang is installed here"
)
def test_serve_sglang_on_this_machine_fails_before_starting(tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["--db", str(tmp_path / "r.db"), "serve", "policy", "--engine", "sglang"]
    )
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "rebase-cli[sglang]" in result.stderr


def test_ports_default_per_role_fall_back_and_refuse_taken_ones(monkeypatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        monkeypatch.setitem(net.DEFAULT_PORTS, "policy", busy)
        fallback = net.resolve_port("policy", "127.0.0.1", None)
        assert fallback != busy and net.port_is_free("127.0.0.1", fallback)
        with pytest.raises(ServeError, match=f"port {busy} on 127.0.0.1 is already in use"):
            net.resolve_port("policy", "127.0.0.1", busy)
    free = net.free_port("127.0.0.1")
    monkeypatch.setitem(net.DEFAULT_PORTS, "reward", free)
    assert net.resolve_port("reward", "127.0.0.1", None) == free
    assert net.resolve_port("reward", "127.0.0.1", 0) > 0


def test_wildcard_binds_are_reached_through_loopback() -> None:
    assert net.base_url("0.0.0.0", 8) == "http://127.0.0.1:8"
    assert net.base_url("::", 8) == "http://[::1]:8"
    assert net.base_url("10.0.0.5", 8) == "http://10.0.0.5:8"


def test_transformers_engine_is_registered_with_its_device_and_thread_env(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launcher = launchers.get_launcher("transformers")
    monkeypatch.setattr(launcher, "executable", "/venv/bin/transformers")
    spec = ServeSpec(
        role="policy", engine="transformers", port=30500, model="/models/smol", device="cuda",
        extra_args=("--dtype", "float32"),
    )  # fmt: skip
    launchers.validate(spec, launcher)
    assert launcher.command(spec) == [
        "/venv/bin/transformers", "serve", "/models/smol",
        "--host", "127.0.0.1", "--port", "30500", "--device", "cuda", "--dtype", "float32",
    ]  # fmt: skip
    assert "OMP_NUM_THREADS" in launcher.env(spec)
    assert launchers.get_launcher("sglang").env(spec) == {}
    with pytest.raises(UsageError, match="--device is not supported by the sglang engine"):
        launchers.validate(ServeSpec(role="policy", engine="sglang", device="cuda"),
                           launchers.get_launcher("sglang"))  # fmt: skip


def test_transformers_engine_serves_the_reward_with_our_scoring_server(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    launcher = launchers.get_launcher("transformers")
    spec = ServeSpec(
        role="reward", engine="transformers", port=30501, model="/models/smol",
        reward_protocol="score", extra_args=("--dtype", "bfloat16"),
    )  # fmt: skip
    launchers.validate(spec, launcher)
    launcher.preflight(spec)
    assert launcher.command(spec) == [
        sys.executable, "-m", "rebase_cli.serving.reward_server", "--model", "/models/smol",
        "--host", "127.0.0.1", "--port", "30501", "--device", "cpu",
        "--head", "causal-lm", "--dtype", "bfloat16",
    ]  # fmt: skip
    classify = ServeSpec(role="reward", engine="transformers", port=1, model="m",
                         reward_protocol="classify", device="auto")  # fmt: skip
    assert launcher.command(classify)[-4:] == ["--device", "auto", "--head",
                                               "sequence-classification"]  # fmt: skip
    assert "OMP_NUM_THREADS" in launcher.env(spec)
    with pytest.raises(UsageError, match="not pooling"):
        launcher.preflight(ServeSpec(role="reward", engine="transformers", model="m",
                                     reward_protocol="pooling"))  # fmt: skip
    with pytest.raises(UsageError, match="needs --model"):
        launcher.preflight(ServeSpec(role="reward", engine="transformers"))


def test_deterministic_policy_starts_sglang_with_deterministic_inference() -> None:
    spec = ServeSpec(role="policy", engine="sglang", port=30000, model="m", deterministic=True)
    launchers.validate(spec, SGLangLauncher())
    assert SGLangLauncher().command(spec) == [
        *SGLANG,
        "--model-path", "m",
        "--host", "127.0.0.1",
        "--port", "30000",
        "--enable-deterministic-inference",
        *PRIORITY_SCHEDULING_FLAGS,
    ]  # fmt: skip
    plain = ServeSpec(role="policy", engine="sglang", port=30000, model="m")
    assert "--enable-deterministic-inference" not in SGLangLauncher().command(plain)
    sim = ServeSpec(role="policy", engine="sim", port=0, deterministic=True)
    assert SimLauncher().command(sim)[-3:] == [
        "--flavour",
        "sglang-deterministic",
        "--enable-priority-scheduling",
    ]


def test_the_policy_server_orders_its_queue_by_priority_unless_the_user_schedules_it() -> None:
    """`rebase serve policy` starts SGLang with queue-order priorities (the search sends each
    level's); the reward server and a user's own scheduling arguments get none."""
    policy = ServeSpec(role="policy", engine="sglang", port=30000, model="m")
    argv = SGLangLauncher().command(policy)
    assert argv[-4:] == list(PRIORITY_SCHEDULING_FLAGS)
    reward = ServeSpec(role="reward", engine="sglang", port=30001, model="r")
    assert "--enable-priority-scheduling" not in SGLangLauncher().command(reward)
    for extra in (("--schedule-policy", "lpm"), ("--schedule-policy=lpm",)):
        own = ServeSpec(role="policy", engine="sglang", port=30000, model="m", extra_args=extra)
        argv = SGLangLauncher().command(own)
        assert "--enable-priority-scheduling" not in argv
        assert argv[-len(extra) :] == list(extra)
    # The policy command's help says what it adds and how to opt out; the reward's adds none.
    policy_help = CliRunner().invoke(app, ["serve", "policy", "--help"], env={"COLUMNS": "200"})
    assert "--enable-priority-scheduling" in policy_help.output
    assert "--schedule-policy" in policy_help.output
    reward_help = CliRunner().invoke(app, ["serve", "reward", "--help"], env={"COLUMNS": "200"})
    assert "priority" not in reward_help.output
