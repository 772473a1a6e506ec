"""The transformers engine (Hugging Face transformers ≥ 5): `transformers serve` for the policy,
our reward server (`reward_server.py`) for the reward; the command lines and the check that they
can run here. Nothing in this module starts a process.

What that server does, as observed with transformers 5.24 on CPU, and what callers must know:
- `transformers serve MODEL` preloads MODEL (a hub id or a local directory) before it listens,
  so once GET /health answers 200 the first request is served without loading.
- /v1/completions honours `stop`, `max_tokens`, `temperature`, `top_p` and `seed`, and reports
  `usage`; it ignores `n` (one choice per request), returns no `logprobs`, and reports neither
  `matched_stop` nor `stop_reason`. The returned text still *contains* the stop string (and the
  rest of the token that completed it, e.g. "\\n\\n" for stop "\\n").
- It samples only when the model's generation_config.json says `"do_sample": true` (else every
  request with temperature > 0 is greedy); `rebase models prepare` writes that.
- Requests are served one at a time; `--continuous-batching` batches them but then ignores
  `stop` and `temperature`, so it is not used.
- torch's default thread count spins badly when the cores are shared with other busy
  processes (the search client, the reward server): one thread per server was over ten times
  faster on a 2-core machine under load. `transformers_env` sets it (half the cores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from rebase_cli.errors import ServeError, UsageError

if TYPE_CHECKING:  # launchers.py may import this module to register the engine
    from rebase_cli.serving.launchers import ServeSpec

INSTALL_HINT = "install it with `pip install 'rebase-cli[transformers]'`"
# Imported by `transformers serve` itself: without them it fails only after a slow start.
_SERVER_MODULES = ("transformers", "torch", "fastapi", "uvicorn", "openai")
_REWARD_SERVER_MODULES = ("transformers", "torch", "fastapi", "uvicorn")
# --reward-protocol → the head the reward server loads.
_HEADS = {"score": "causal-lm", "classify": "sequence-classification"}
MIN_MAJOR = 5
DEVICES = ("cpu", "cuda", "auto")


def transformers_executable() -> str:
    """The `transformers` console script of this interpreter's environment (the one whose
    packages were checked), falling back to the one on PATH."""
    beside = Path(sys.executable).with_name("transformers")
    if beside.exists():
        return str(beside)
    found = shutil.which("transformers")
    if found is None:
        raise ServeError("the `transformers` command is not installed", INSTALL_HINT)
    return found


def check_transformers_available(modules: Sequence[str] = _SERVER_MODULES) -> None:
    """Raise a one-line ServeError unless `transformers serve` can run in this environment."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise ServeError(
            f"the transformers engine needs {', '.join(missing)} (not installed)", INSTALL_HINT
        )
    if "transformers" in modules:
        version = metadata.version("transformers")
        head = version.split(".", 1)[0]
        if not head.isdigit() or int(head) < MIN_MAJOR:
            raise ServeError(
                f"the transformers engine needs transformers>={MIN_MAJOR}, found {version}",
                INSTALL_HINT,
            )


def build_transformers_command(
    model: str,
    host: str,
    port: int,
    device: str = "cpu",
    extra: Sequence[str] = (),
    *,
    dtype: str | None = None,
    executable: str | None = None,
) -> list[str]:
    """argv of `transformers serve` preloading `model` (hub id or local directory) on
    host:port. `dtype` None keeps the checkpoint's dtype; `extra` is appended verbatim."""
    _check_device(device)
    argv = [executable or transformers_executable(), "serve", model]
    argv += ["--host", host, "--port", str(port), "--device", device]
    if dtype is not None:
        argv += ["--dtype", dtype]
    return argv + list(extra)


def _check_device(device: str) -> None:
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ServeError(f"unknown device {device!r}", f"use one of {', '.join(DEVICES)}")


def default_threads() -> int:
    """Half the cores (at least one): the other half stays with the search client and the
    reward server, which run beside the policy on a CPU-only machine."""
    return max(1, (os.cpu_count() or 2) // 2)


def transformers_env(threads: int | None = None) -> Mapping[str, str]:
    """Environment additions for the server process: torch's intra-op thread count (`threads`,
    else `default_threads()`), unless the user already set OMP_NUM_THREADS."""
    if "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(threads or default_threads())}


def build_reward_command(
    model: str,
    host: str,
    port: int,
    device: str = "cpu",
    extra: Sequence[str] = (),
    *,
    head: str | None = None,
) -> list[str]:
    """argv of our reward server (`rebase_cli.serving.reward_server`: SGLang's /v1/score,
    /classify and /tokenize computed with transformers) for `model` on host:port. `head` None
    lets the server read it from the checkpoint; `extra` (e.g. `--dtype bfloat16`) is appended."""
    _check_device(device)
    argv = [sys.executable, "-m", "rebase_cli.serving.reward_server", "--model", model]
    argv += ["--host", host, "--port", str(port), "--device", device]
    if head is not None:
        argv += ["--head", head]
    return argv + list(extra)


class TransformersLauncher:
    """The transformers engine (same shape as the launchers in `launchers.py`, plus `env`):
    `transformers serve` for the policy, our own reward server for the reward (transformers
    serve has no scoring endpoint)."""

    name = "transformers"
    # Loading a small model on a CPU takes seconds; a hub download of a large one, minutes.
    default_timeout = 600.0
    options = frozenset({"model", "device"})

    def __init__(
        self, device: str = "cpu", threads: int | None = None, executable: str | None = None
    ) -> None:
        self.device = device
        self.threads = threads
        self.executable = executable

    def preflight(self, spec: ServeSpec) -> None:
        if spec.role == "reward" and spec.reward_protocol == "pooling":
            raise UsageError(
                "the transformers engine serves the score and classify reward protocols, "
                "not pooling",
                "serve the PRM with vLLM (`vllm serve MODEL --runner pooling`), or use "
                "--reward-protocol score|classify",
            )
        if spec.model is None:
            raise UsageError(
                "the transformers engine needs --model",
                "a Hugging Face id, or the folder `rebase models prepare smollm2` prints",
            )
        check_transformers_available(
            _SERVER_MODULES if spec.role == "policy" else _REWARD_SERVER_MODULES
        )

    def command(self, spec: ServeSpec) -> list[str]:
        if spec.role == "reward":
            return build_reward_command(
                str(spec.model),
                spec.host,
                int(spec.port or 0),
                spec.device or self.device,
                spec.extra_args,
                head=_HEADS.get(spec.reward_protocol or ""),
            )
        return build_transformers_command(
            str(spec.model),
            spec.host,
            int(spec.port or 0),
            spec.device or self.device,
            spec.extra_args,
            executable=self.executable,
        )

    def env(self, spec: ServeSpec) -> Mapping[str, str]:
        return transformers_env(self.threads)
