"""Which real server the simulator imitates: how it seeds samples, reports stops and answers
its information routes.

Each flavour is what the server's own source does (sglang 0.5.23, vllm 0.33.0):

- `sglang`: the per-request `seed` never reaches the sampler (it is applied only under
  `--enable-deterministic-inference`), so samples differ from call to call; stops are reported
  in `matched_stop` (the stop string, or the EOS token id). `/health` runs a one-token
  generation and answers after at least a second; `/ready` answers at once; `/server_info`
  returns the server arguments and version; `POST /generate` is the native batch route.
- `sglang-deterministic`: the same server started with `--enable-deterministic-inference`: the
  seed is applied, and the n choices of one request share it (sampling is a hash of seed and
  position), so they are identical. Native `/generate` takes one `sampling_seed` per input.
- `vllm`: choice i of an `n` request gets seed + i; stops are reported in `stop_reason` (the
  stop string, or null at EOS); `/version` answers; `/pooling` accepts a list of inputs and
  refuses `task: "reward"`.
- `openai`: a plain OpenAI-compatible server (`transformers serve`): one choice whatever `n`
  asks, no stop field, the stop string left at the end of the text, the seed applied per
  request (transformers sets torch's global seed), no route that says any of this.

The simulator's default is `vllm`: it is the only flavour on which one request per parent gives
distinct children that are also reproducible, so `--policy sim` runs resume exactly with the
same request count as before flavours existed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

SGLANG_VERSION = "0.5.23"
VLLM_VERSION = "0.33.0"
SGLANG_DEFAULT_SEED = 42  # deterministic SGLang's sampling_seed when a request sends none


@dataclass(frozen=True)
class Flavour:
    """The behaviours of one real server that decide whether a search is correct."""

    name: str
    honours_seed: bool
    seed_per_choice: bool  # choice i samples with seed + i; else all choices share the seed
    stop_field: str | None  # "matched_stop", "stop_reason" or None (not reported)
    eos_reported_as_null: bool  # EOS is `stop_reason: null` (vLLM), not the EOS token id
    honours_n: bool
    stop_string_in_text: bool
    returns_token_ids: bool
    sglang_routes: bool  # /server_info, /ready, slow /health, POST /generate
    vllm_routes: bool  # /version
    health_seconds: float  # how long /health takes once loaded
    # The seed a request without one samples with, when seeds are applied (None: a fresh one).
    default_seed: int | None = None

    @property
    def deterministic(self) -> bool:
        return self.honours_seed


_SGLANG = Flavour(
    name="sglang",
    honours_seed=False,
    seed_per_choice=False,
    stop_field="matched_stop",
    eos_reported_as_null=False,
    honours_n=True,
    stop_string_in_text=False,
    returns_token_ids=True,
    sglang_routes=True,
    vllm_routes=False,
    health_seconds=1.0,
)
FLAVOURS: dict[str, Flavour] = {
    "sglang": _SGLANG,
    # The same server started with --enable-deterministic-inference.
    "sglang-deterministic": replace(
        _SGLANG,
        name="sglang-deterministic",
        honours_seed=True,
        default_seed=SGLANG_DEFAULT_SEED,
    ),
    "vllm": Flavour(
        name="vllm",
        honours_seed=True,
        seed_per_choice=True,
        stop_field="stop_reason",
        eos_reported_as_null=True,
        honours_n=True,
        stop_string_in_text=False,
        returns_token_ids=True,
        sglang_routes=False,
        vllm_routes=True,
        health_seconds=0.0,
    ),
    "openai": Flavour(
        name="openai",
        honours_seed=True,
        seed_per_choice=False,
        stop_field=None,
        eos_reported_as_null=False,
        honours_n=False,
        stop_string_in_text=True,
        returns_token_ids=False,
        sglang_routes=False,
        vllm_routes=False,
        health_seconds=0.0,
    ),
}
DEFAULT_FLAVOUR = "vllm"


def choice_seeds(flavour: Flavour, seed: int | None, n: int, draw: Callable[[], int]) -> list[int]:
    """The seed each of the n choices of one request samples with.

    `draw()` gives a fresh random seed (the server's own RNG): used for every choice when the
    flavour ignores seeds, or honours them per choice but the request sent none."""
    if not flavour.honours_seed:
        return [draw() for _ in range(n)]
    if seed is None:
        if flavour.default_seed is not None:
            return [flavour.default_seed] * n
        return [draw() for _ in range(n)]
    if flavour.seed_per_choice:
        return [seed + index for index in range(n)]
    return [seed] * n
