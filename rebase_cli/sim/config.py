"""Every knob of the simulator in one frozen record.

Defaults give a fast, fault-free, latency-free server whose policy solves roughly half of
GSM8K in one sample, like a 7B math model, and whose PRM separates right from wrong steps
clearly but not perfectly. The record is pure data: building models from it is the job of
`policy`, `prm`, `perf` and `faults`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rebase_cli.errors import ConfigError
from rebase_cli.prompts import DEFAULT_TEMPLATE
from rebase_cli.sim.flavours import DEFAULT_FLAVOUR, FLAVOURS, Flavour

ROLES = ("policy", "reward", "both")
MODEL_PREFIX = "sim-"  # every model id the simulator reports starts with this marker


@dataclass(frozen=True)
class LatencyConfig:
    """A GPU server's cost model. All zero (the default) means: answer at once.

    Each sequence of a request (a choice of a completion, an input of a batch, an item of a
    scoring call) holds a slot for `base_ms + its uncached prompt tokens * prompt_token_ms +
    its output tokens * output_token_ms`; at most `max_running` sequences run at once and the
    rest wait in arrival order, or by request priority with `priority_scheduling` (SGLang's
    --enable-priority-scheduling; see `sim.perf`)."""

    base_ms: float = 0.0
    prompt_token_ms: float = 0.0
    output_token_ms: float = 0.0
    max_running: int = 0  # 0: unlimited
    prefix_cache: bool = True
    prefix_cache_blocks: int = 200_000  # blocks of PREFIX_BLOCK_CHARS characters kept (LRU)
    priority_scheduling: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.base_ms or self.prompt_token_ms or self.output_token_ms)

    def service_seconds(self, uncached_prompt_tokens: int, output_tokens: int) -> float:
        """How long one sequence holds its slot."""
        return (
            self.base_ms
            + uncached_prompt_tokens * self.prompt_token_ms
            + output_tokens * self.output_token_ms
        ) / 1000.0


@dataclass(frozen=True)
class FaultConfig:
    """Fractions of model requests that fail on purpose. They are drawn from one seeded RNG
    per server, so a fixed request sequence meets the same faults on every run."""

    http_500: float = 0.0
    http_503: float = 0.0
    hang: float = 0.0
    hang_seconds: float = 60.0
    malformed: float = 0.0
    seed: int | None = None  # None: the server seed

    @property
    def total(self) -> float:
        return self.http_500 + self.http_503 + self.hang + self.malformed


@dataclass(frozen=True)
class SimConfig:
    """Configuration of one simulator server.

    Invariants (checked by `validate`): rates lie in [0, 1] and fault rates sum to at most 1;
    model ids start with `sim-`; `role` is one of ROLES."""

    role: str = "policy"
    flavour: str = DEFAULT_FLAVOUR  # which real server's behaviour (see sim.flavours)
    host: str = "127.0.0.1"
    port: int = 30000
    datasets: tuple[str, ...] = ("gsm8k",)
    template: str = DEFAULT_TEMPLATE
    seed: int = 0
    policy_model: str = "sim-policy"
    reward_model: str = "sim-prm"
    # Generation model.
    error_rate: float = 0.2  # mean probability that one step goes wrong
    eos_token_id: int = 2  # reported as matched_stop when a solution ends (Llama's </s>)
    max_model_len: int = 8192
    # PRM model: score = sigmoid(signal * label + N(0, noise)).
    prm_signal: float = 0.75
    prm_noise: float = 1.0
    good_token_id: int | None = None  # None: the template's prm.good_token_id
    bad_token_id: int | None = None
    # Server behaviour.
    load_seconds: float = 0.0  # /health answers 503 for this long after start
    # /v1/score with `score_extraction_token` (a score at every tag of a path) is served only
    # by an SGLang started with --disable-radix-cache --chunked-prefill-size -1; without them
    # (SGLang's defaults) it answers 400, and so does the simulator unless this is set.
    score_extraction: bool = False
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def with_(self, **changes: object) -> SimConfig:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes).validate()  # type: ignore[arg-type]

    @property
    def server(self) -> Flavour:
        return FLAVOURS[self.flavour]

    @property
    def serves_policy(self) -> bool:
        return self.role in ("policy", "both")

    @property
    def serves_reward(self) -> bool:
        return self.role in ("reward", "both")

    @property
    def fault_seed(self) -> int:
        return self.seed if self.faults.seed is None else self.faults.seed

    def validate(self) -> SimConfig:
        """Raise ConfigError on an impossible setting; return self for chaining."""
        if self.role not in ROLES:
            raise ConfigError(f"unknown simulator role {self.role!r}", f"use {', '.join(ROLES)}")
        if self.flavour not in FLAVOURS:
            raise ConfigError(
                f"unknown simulator flavour {self.flavour!r}", f"use {', '.join(FLAVOURS)}"
            )
        for name in ("policy_model", "reward_model"):
            if not getattr(self, name).startswith(MODEL_PREFIX):
                raise ConfigError(
                    f"simulated model id {getattr(self, name)!r} must start with {MODEL_PREFIX!r}",
                    "reports rely on the prefix to label results as simulated",
                )
        rates = {
            "error rate": self.error_rate,
            "500 fault rate": self.faults.http_500,
            "503 fault rate": self.faults.http_503,
            "hang fault rate": self.faults.hang,
            "malformed fault rate": self.faults.malformed,
        }
        for what, value in rates.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{what} {value} is outside [0, 1]", "pass a fraction")
        if self.faults.total > 1.0:
            raise ConfigError("fault rates add up to more than 1", "lower them")
        if self.prm_noise < 0 or self.prm_signal < 0:
            raise ConfigError("PRM signal and noise must be non-negative", "fix the flags")
        if self.latency.priority_scheduling and not self.server.sglang_routes:
            raise ConfigError(
                f"--enable-priority-scheduling is an SGLang option; the {self.flavour} "
                "flavour has no such scheduler",
                "use --flavour sglang or sglang-deterministic",
            )
        if self.latency.max_running < 0:
            raise ConfigError("max running sequences must be >= 0", "0 means unlimited")
        if not self.datasets:
            raise ConfigError("the simulator needs at least one dataset", "pass --dataset")
        return self
