"""How the n children of one parent are asked for, per kind of policy server.

The goal on every server: n *distinct* samples (the search tree must not collapse), and the
same samples again on a resumed run wherever the server makes that possible. Sample i is
always meant to be drawn with seed + i:

| server               | requests                    | seed sent        | reproducible |
|----------------------|-----------------------------|------------------|--------------|
| vllm                 | 1 per parent (`n`)          | seed (vLLM: + i) | yes          |
| sglang-deterministic | 1 per level (`/generate`)   | seed + i each    | yes          |
|                      | or n per parent (n=1, if    | seed + i each    | yes          |
|                      | asked, or behind the router)|                  |              |
| sglang               | 1 per level (`/generate`)   | none (ignored)   | no           |
|                      | or 1 per parent (`n`, if    |                  |              |
|                      | asked, or behind the router)|                  |              |
| openai               | 1, else n per parent (n=1)  | seed + i         | unknown: no  |

SGLang with `--enable-deterministic-inference` gives the n choices of one request the same
seed (identical children), so each child needs its own request or its own batch entry. SGLang
without it ignores the seed: sending one would only pretend. On both, a level's children go
in one native /generate batch, one entry per child: SGLang takes a batch whose entries have
different sampling parameters but not different `n` (`GenerateReqInput` refuses it), and its
scheduler runs each entry as a request of its own. vLLM applies one seed to every prompt of a
request, so a batch of parents there would correlate their children: one request per parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

COMPLETIONS = "completions"
GENERATE = "generate"


@dataclass(frozen=True)
class SamplingPlan:
    """What the policy client sends for one parent's children, and what that guarantees."""

    server: str
    route: str  # COMPLETIONS or GENERATE
    send_seed: bool
    samples_per_request: int | None  # None: all children of a parent in one request
    token_ids: bool  # ask for per-choice token ids (`return_token_ids`)
    reproducible: bool
    why: str

    def describe(self) -> dict[str, Any]:
        """The plan as stored with a run (JSON-serialisable)."""
        return {
            "server": self.server,
            "sampling_plan": self.label,
            "reproducible": self.reproducible,
            "reproducible_why": self.why,
        }

    @property
    def label(self) -> str:
        if self.route == GENERATE:
            if self.send_seed:
                return "native /generate batch, one sampling_seed per child"
            return "native /generate batch, one entry per child, no seed (the server ignores it)"
        per = "n per request" if self.samples_per_request != 1 else "one request per child"
        seed = "seed + i per child" if self.send_seed else "no seed (the server ignores it)"
        return f"/v1/completions, {per}, {seed}"


def plan_for(
    server: str, samples_per_request: int | None = None, *, native_batch: bool = True
) -> SamplingPlan:
    """The plan for a server kind (see the table above). `samples_per_request` (the config's
    cap on n per request) is honoured where the plan sends n; 1 on SGLang picks n=1 requests
    over the native batch, and so does `native_batch=False` (the SGLang router answers a
    /generate batch, a list of texts, with HTTP 422)."""
    if server == "vllm":
        return SamplingPlan(
            server,
            COMPLETIONS,
            send_seed=True,
            samples_per_request=samples_per_request,
            token_ids=True,
            reproducible=True,
            why="vLLM applies the seed and gives choice i of a request seed + i",
        )
    if server in ("sglang", "sglang-deterministic"):
        # Seeds count only on a deterministic server; there they are sent and reproduce.
        deterministic = server == "sglang-deterministic"
        why = (
            "SGLang with --enable-deterministic-inference applies the seed; "
            "each child is asked with its own seed"
            if deterministic
            else "SGLang ignores seeds unless started with --enable-deterministic-inference "
            "(the --deterministic option of rebase serve policy): a resumed run samples anew"
        )
        if samples_per_request == 1 or not native_batch:
            # Deterministic: one child per request, as the n choices of one share its seed.
            per_request = 1 if deterministic else samples_per_request
            return SamplingPlan(
                server, COMPLETIONS, deterministic, per_request, True, deterministic, why
            )
        return SamplingPlan(server, GENERATE, deterministic, None, True, deterministic, why)
    return SamplingPlan(
        server,
        COMPLETIONS,
        send_seed=True,
        samples_per_request=samples_per_request,
        token_ids=False,
        reproducible=False,
        why="the server does not say whether it applies seeds (no /server_info or /version)",
    )
