"""Command lines per engine. A launcher checks that its engine can run here and turns a
`ServeSpec` into argv; nothing in this module starts a process.

Adding an engine (e.g. `transformers serve`) means one more `Launcher` in `ENGINES` and one more
member of `EngineName`; the process, readiness, registry and stop logic are shared.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from enum import Enum
from typing import Literal, Protocol

from rebase_cli.errors import ServeError, UsageError
from rebase_cli.params import RewardProtocol
from rebase_cli.serving.transformers_engine import TransformersLauncher

Role = Literal["policy", "reward"]
ROLES: tuple[Role, ...] = ("policy", "reward")
REDACTED = "***"
_SECRET_FLAGS = ("--api-key",)


class EngineName(str, Enum):
    sglang = "sglang"
    sim = "sim"
    transformers = "transformers"


@dataclass(frozen=True)
class ServeSpec:
    """What the user asked for. `port`: None = the role's default, 0 = any free port; it is the
    resolved port by the time `command()` sees it. Other optional fields left as None mean "the
    engine's default" and add no flag."""

    role: Role
    engine: str
    host: str = "127.0.0.1"
    port: int | None = None
    model: str | None = None
    tp: int | None = None
    dp: int | None = None
    mem_fraction: float | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    reward_protocol: str | None = None
    device: str | None = None
    # Seeded, reproducible sampling (SGLang's --enable-deterministic-inference); None: off.
    deterministic: bool | None = None
    extra_args: tuple[str, ...] = ()

    @property
    def client_model(self) -> str | None:
        """The model id clients send, when known before the server answers /v1/models."""
        return self.served_model_name or self.model


# The optional fields an engine may or may not understand; each launcher lists its own.
OPTIONAL_FIELDS = (
    "model",
    "tp",
    "dp",
    "mem_fraction",
    "api_key",
    "served_model_name",
    "device",
    "deterministic",
)
_FLAG_NAMES = {
    "model": "--model",
    "tp": "--tp",
    "dp": "--dp",
    "mem_fraction": "--mem-fraction",
    "api_key": "--api-key",
    "served_model_name": "--served-model-name",
    "device": "--device",
    "deterministic": "--deterministic",
}


class Launcher(Protocol):
    name: str
    #: Seconds to wait for /health when --timeout is not given.
    default_timeout: float
    #: Which of OPTIONAL_FIELDS this engine understands.
    options: frozenset[str]

    def preflight(self, spec: ServeSpec) -> None:
        """Raise a ServeError naming what is missing and how to fix it, before anything starts."""

    def command(self, spec: ServeSpec) -> list[str]:
        """The argv that serves `spec` (the API key, if any, is part of it: redact to show)."""

    def env(self, spec: ServeSpec) -> Mapping[str, str]:
        """Variables added to the server's environment."""


def validate(spec: ServeSpec, launcher: Launcher) -> None:
    """Usage checks shared by all engines: role-specific options, unsupported options."""
    if spec.reward_protocol is not None:
        if spec.role != "reward":
            raise UsageError("--reward-protocol applies only to `rebase serve reward`")
        if spec.reward_protocol not in set(RewardProtocol):
            raise UsageError(
                f"unknown reward protocol {spec.reward_protocol!r}",
                f"choose one of {', '.join(RewardProtocol)}",
            )
    if spec.deterministic is not None and spec.role != "policy":
        raise UsageError("--deterministic applies only to `rebase serve policy`")
    values = {f.name: getattr(spec, f.name) for f in fields(spec)}
    for name in OPTIONAL_FIELDS:
        if values[name] is not None and name not in launcher.options:
            raise UsageError(f"{_FLAG_NAMES[name]} is not supported by the {launcher.name} engine")
    for name in ("tp", "dp"):
        if values[name] is not None and values[name] < 1:
            raise UsageError(f"{_FLAG_NAMES[name]} must be at least 1")
    if spec.mem_fraction is not None and not 0 < spec.mem_fraction <= 1:
        raise UsageError("--mem-fraction must be in (0, 1]")


def redact(argv: Sequence[str]) -> list[str]:
    """argv with secret values (`--api-key K` or `--api-key=K`) replaced, safe to log or store."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg in _SECRET_FLAGS:
            out.append(arg)
            hide_next = True
        elif arg.startswith(tuple(f"{flag}=" for flag in _SECRET_FLAGS)):
            out.append(arg.split("=", 1)[0] + "=" + REDACTED)
        else:
            out.append(arg)
    return out


# --------------------------------------------------------------------------------- sglang


def gpu_count(*, use_torch: bool = True) -> int | None:
    """CUDA GPUs visible here: `nvidia-smi -L` lines, else torch's count if `use_torch` and it
    is importable, else None (nothing could tell)."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listing = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            listing = None
        if listing is not None and listing.returncode == 0:
            return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    if use_torch and importlib.util.find_spec("torch") is not None:
        import torch  # slow import, only reached when sglang is installed but nvidia-smi is not

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    return None


# The search gives each policy request its level's priority, shallower first, so that the
# problems of a run progress at a similar pace (clients.queue_priority): queue order only, with
# no preemption, and requests without one (probes) at priority 0.
PRIORITY_SCHEDULING_FLAGS = (
    "--enable-priority-scheduling",
    "--disable-priority-preemption",
    "--default-priority-value",
    "0",
)
_SCHEDULING_FLAGS = (
    "--schedule-policy",
    "--enable-priority-scheduling",
    "--disable-priority-preemption",
    "--default-priority-value",
    "--schedule-low-priority-values-first",
    "--priority-scheduling-preemption-threshold",
)


def _takes_over_scheduling(extra_args: Sequence[str]) -> bool:
    """Whether the user's own SGLang arguments set the scheduling policy or priorities (then
    theirs apply alone: priority scheduling needs --schedule-policy fcfs or lof)."""
    return any(arg.split("=", 1)[0] in _SCHEDULING_FLAGS for arg in extra_args)


class SGLangLauncher:
    """`python -m sglang.launch_server`. A reward model with the `score` protocol (an LM-head PRM
    such as Math-Shepherd) is served as an ordinary generation model; `classify` (a scalar
    reward head) needs `--is-embedding`; `pooling` is a vLLM protocol SGLang does not serve."""

    name = "sglang"
    default_timeout = 900.0
    options = frozenset(OPTIONAL_FIELDS) - {"device"}

    def preflight(self, spec: ServeSpec) -> None:
        if spec.reward_protocol == RewardProtocol.pooling:
            raise UsageError(
                "SGLang does not serve the pooling reward protocol",
                "serve the PRM with vLLM (`vllm serve MODEL --runner pooling`) and pass its URL "
                "to `rebase search`, or use --reward-protocol score|classify",
            )
        installed = importlib.util.find_spec("sglang") is not None
        # Without sglang there is no torch to ask either; nvidia-smi alone answers quickly.
        gpus = gpu_count(use_torch=installed)
        no_gpu = "no CUDA GPU found" + ("" if gpus == 0 else " (no nvidia-smi)")
        if not installed:
            where = "" if gpus else f" and {no_gpu}"
            raise ServeError(
                f"SGLang is not installed{where}",
                "install it with `pip install 'rebase-cli[sglang]'`"
                + (" on a machine with an NVIDIA GPU" if not gpus else "")
                + ", or use --engine sim for the CPU simulator",
            )
        if not gpus:
            raise ServeError(
                f"SGLang needs a CUDA GPU: {no_gpu}",
                "run on a machine with an NVIDIA GPU and driver, or use --engine sim",
            )
        needed = (spec.tp or 1) * (spec.dp or 1)
        if needed > gpus:
            raise ServeError(
                f"--tp {spec.tp or 1} x --dp {spec.dp or 1} needs {needed} GPUs, found {gpus}",
                "lower --tp/--dp, or use several machines behind the SGLang router",
            )
        if spec.model is None:
            raise UsageError(
                "the sglang engine needs --model", "a Hugging Face model id or a local folder"
            )

    def command(self, spec: ServeSpec) -> list[str]:
        argv = [sys.executable, "-m", "sglang.launch_server", "--model-path", str(spec.model)]
        argv += ["--host", spec.host, "--port", str(spec.port)]
        if spec.tp is not None:
            argv += ["--tp-size", str(spec.tp)]
        if spec.dp is not None:
            argv += ["--dp-size", str(spec.dp)]
        if spec.mem_fraction is not None:
            argv += ["--mem-fraction-static", str(spec.mem_fraction)]
        if spec.api_key is not None:
            argv += ["--api-key", spec.api_key]
        if spec.served_model_name is not None:
            argv += ["--served-model-name", spec.served_model_name]
        if spec.role == "reward" and spec.reward_protocol == RewardProtocol.classify:
            argv.append("--is-embedding")
        if spec.deterministic:
            # Without it SGLang never applies a request's seed; with it, each child of a
            # search gets its own seed from the client (see clients.sampling_plan).
            argv.append("--enable-deterministic-inference")
        if spec.role == "policy" and not _takes_over_scheduling(spec.extra_args):
            argv += PRIORITY_SCHEDULING_FLAGS
        return argv + list(spec.extra_args)

    def env(self, spec: ServeSpec) -> Mapping[str, str]:
        return {}


# ------------------------------------------------------------------------------------ sim


def sim_sglang_flags(spec: ServeSpec, flavour: str) -> list[str]:
    """The simulator flags that make it play SGLang `flavour` as `rebase serve` starts SGLang:
    a policy server's queue goes by priority (see SGLangLauncher)."""
    return ["--flavour", flavour] + (
        ["--enable-priority-scheduling"] if spec.role == "policy" else []
    )


class SimLauncher:
    """The CPU simulator (`python -m rebase_cli.sim`), which serves every protocol of its role.
    Its own options (`--template`, `--error-rate`, `--load-seconds`, latency and faults) go
    after `--`."""

    name = "sim"
    default_timeout = 60.0
    options = frozenset({"model", "deterministic"})
    datasets = ("gsm8k", "math500")

    def preflight(self, spec: ServeSpec) -> None:
        if importlib.util.find_spec("rebase_cli.sim.__main__") is None:
            raise ServeError("the simulator is missing from this installation", "reinstall rebase")

    def command(self, spec: ServeSpec) -> list[str]:
        argv = [sys.executable, "-m", "rebase_cli.sim", "--role", spec.role]
        argv += ["--host", spec.host, "--port", str(spec.port)]
        for name in self.datasets:
            argv += ["--dataset", name]
        if spec.model is not None:  # the simulator insists on ids starting with "sim-"
            argv += [f"--{spec.role}-model-id", spec.model]
        if spec.deterministic:
            argv += sim_sglang_flags(spec, "sglang-deterministic")
        return argv + list(spec.extra_args)

    def env(self, spec: ServeSpec) -> Mapping[str, str]:
        return {}


ENGINES: dict[str, Launcher] = {
    "sglang": SGLangLauncher(),
    "sim": SimLauncher(),
    "transformers": TransformersLauncher(),
}


def get_launcher(engine: str) -> Launcher:
    try:
        return ENGINES[engine]
    except KeyError:
        raise UsageError(
            f"unknown engine {engine!r}", f"choose one of {', '.join(ENGINES)}"
        ) from None
