"""The `transformers serve` command builder and its preflight (the real server runs in
tests/test_real_model_slow.py)."""

from __future__ import annotations

import dataclasses
import os

import pytest

from rebase_cli.errors import ServeError, UsageError
from rebase_cli.serving.launchers import ServeSpec
from rebase_cli.serving.transformers_engine import (
    TransformersLauncher,
    build_transformers_command,
    check_transformers_available,
    transformers_env,
)


def test_command_preloads_the_model_on_the_given_address() -> None:
    argv = build_transformers_command("/m/smollm2", "127.0.0.1", 8011, executable="transformers")
    assert argv == [
        "transformers",
        "serve",
        "/m/smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        "8011",
        "--device",
        "cpu",
    ]


def test_dtype_and_extra_arguments_are_passed_through() -> None:
    argv = build_transformers_command(
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "0.0.0.0",
        9000,
        "cuda:1",
        ["--log-level", "info"],
        dtype="float32",
        executable="/venv/bin/transformers",
    )
    assert argv[:3] == ["/venv/bin/transformers", "serve", "HuggingFaceTB/SmolLM2-360M-Instruct"]
    assert argv[3:] == [
        "--host",
        "0.0.0.0",
        "--port",
        "9000",
        "--device",
        "cuda:1",
        "--dtype",
        "float32",
        "--log-level",
        "info",
    ]


def test_unknown_device_is_refused() -> None:
    with pytest.raises(ServeError, match="unknown device 'tpu'"):
        build_transformers_command("m", "127.0.0.1", 1, "tpu", executable="transformers")


def test_missing_packages_give_the_install_command() -> None:
    with pytest.raises(ServeError) as caught:
        check_transformers_available(("json", "rebase_no_such_module"))
    line = caught.value.one_line()
    assert "rebase_no_such_module" in line and "json" not in line
    assert "pip install 'rebase-cli[transformers]'" in line


def test_server_threads_leave_cores_to_the_search(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert transformers_env() == {"OMP_NUM_THREADS": "1"}
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert transformers_env() == {"OMP_NUM_THREADS": "8"}
    assert transformers_env(3) == {"OMP_NUM_THREADS": "3"}
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's own setting wins
    assert transformers_env(3) == {}


def test_launcher_needs_a_model() -> None:
    """(The reward role is served by our scoring server: tests/test_serve_launchers.py.)"""
    launcher = TransformersLauncher()
    with pytest.raises(UsageError, match="needs --model"):
        launcher.preflight(ServeSpec(role="policy", engine="transformers"))


def test_launcher_command_uses_the_spec() -> None:
    spec = ServeSpec(role="policy", engine="transformers", port=8123, model="/m")
    spec = dataclasses.replace(spec, extra_args=("--dtype", "float32"))
    argv = TransformersLauncher(device="cpu", executable="transformers").command(spec)
    assert argv == [
        "transformers",
        "serve", "/m", "--host", "127.0.0.1", "--port", "8123", "--device", "cpu",
        "--dtype", "float32",
    ]  # fmt: skip
