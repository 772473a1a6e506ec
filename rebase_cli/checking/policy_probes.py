"""Policy probes: is `n` honoured, is the seed honoured (and does the server sample at all),
is the stop string reported. Raw /v1/completions answers through the run's own `Endpoint`
(same client, same retries), before any adapter reinterprets them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rebase_cli.checking.findings import OK, SKIPPED, WARN, Finding, Tally
from rebase_cli.clients.policy import STOP_FIELDS
from rebase_cli.clients.retry import MalformedResponse
from rebase_cli.clients.transport import Endpoint, parse_json

PROBE_TOKENS = 12  # tokens per sampling probe: enough to differ, cheap on a CPU
_STOP_NAMES = {"matched_stop": "matched_stop (SGLang)", "stop_reason": "stop_reason (vLLM)"}


@dataclass(frozen=True)
class Sample:
    """The raw choices of one /v1/completions answer."""

    choices: tuple[dict[str, Any], ...]

    @property
    def texts(self) -> list[str]:
        return [str(c.get("text")) for c in self.choices]


async def complete(
    endpoint: Endpoint, model: str, prompt: str, *, n: int, seed: int, stop: Sequence[str],
    temperature: float, tally: Tally, max_tokens: int = PROBE_TOKENS,
) -> Sample:  # fmt: skip
    """One raw completions request (retried like a run's)."""
    params = {"model": model, "prompt": prompt, "n": n, "seed": seed, "stop": list(stop),
              "temperature": temperature, "max_tokens": max_tokens}  # fmt: skip

    async def send() -> str:
        raw = await endpoint.client.completions.with_raw_response.create(**params)
        return raw.http_response.text

    def parse(text: str) -> Sample:
        data = parse_json(text)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices:
            raise MalformedResponse("no `choices` list", text)
        if not all(isinstance(c, dict) and isinstance(c.get("text"), str) for c in choices):
            raise MalformedResponse("a choice without `text`", text)
        return Sample(tuple(sorted(choices, key=lambda c: c.get("index") or 0)))

    sample, retries = await endpoint.call("/v1/completions", send, parse)
    tally.retries += retries
    return sample


N_PROBE = 4


async def policy_findings(
    endpoint: Endpoint, model: str, prompt: str, *, stop: Sequence[str], temperature: float,
    seed: int, tally: Tally,
) -> list[Finding]:  # fmt: skip
    """n honoured, seed honoured (and sampling on), stop reporting: six short
    requests, seven samples."""
    args = {"stop": stop, "temperature": temperature, "tally": tally}
    # Four choices: two short samples can agree by chance (a first step often has one
    # natural wording); four that all agree share their seed.
    pair = await complete(endpoint, model, prompt, n=N_PROBE, seed=seed, **args)
    first = await complete(endpoint, model, prompt, n=1, seed=seed, **args)
    again = await complete(endpoint, model, prompt, n=1, seed=seed, **args)
    others = [
        await complete(endpoint, model, prompt, n=1, seed=seed + k, **args) for k in (1, 2, 3)
    ]
    findings = [_n_finding(pair, temperature)]
    findings.append(_seed_finding(first, again, [pair, *others], temperature))
    findings.append(_stop_finding([pair, first, again, *others]))
    return findings


def _n_finding(pair: Sample, temperature: float) -> Finding:
    if len(pair.choices) < 2:
        return Finding(
            "policy.n", WARN, f"ignores n: {len(pair.choices)} choice for n={N_PROBE}",
            "the search then asks once per sample: more requests, same trees",
        )  # fmt: skip
    if temperature > 0 and len(set(pair.texts)) == 1:
        return Finding(
            "policy.n", WARN,
            f"the {len(pair.choices)} choices of one seeded request are identical (they share "
            "the seed, as SGLang does under --enable-deterministic-inference): one request "
            "with n would give copies as siblings",
            "the search asks deterministic SGLang one seed per child (native /generate); for "
            "another server that does this, pass --samples-per-request 1",
        )  # fmt: skip
    distinct = len(set(pair.texts))
    return Finding("policy.n", OK, f"n={N_PROBE} gives {distinct} different choices")


def _seed_finding(
    first: Sample, again: Sample, others: list[Sample], temperature: float
) -> Finding:
    if temperature == 0:
        return Finding("policy.seed", SKIPPED, "temperature 0: greedy, seeds play no part")
    text = first.texts[0]
    if again.texts[0] != text:
        return Finding(
            "policy.seed", WARN,
            "the same request with the same seed gave different text: seeds are not honoured, "
            "so runs are not reproducible and a resumed tree differs from an uninterrupted one",
            "SGLang honours seeds only when started with --enable-deterministic-inference",
        )  # fmt: skip
    texts = {t for o in others for t in o.texts}
    if texts == {text}:
        return Finding(
            "policy.seed", WARN,
            f"{sum(len(o.texts) for o in others) + 1} samples with different seeds are the same "
            "text: the server does not sample (greedy), so every child of a node is the same step",
            "enable sampling on the server (transformers serve samples only when the model's "
            "generation_config.json says do_sample: true; `rebase models prepare` writes it)",
        )  # fmt: skip
    return Finding("policy.seed", OK, "same seed, same text; other seeds, other text")


def _stop_finding(samples: Sequence[Sample]) -> Finding:
    choices = [c for s in samples for c in s.choices]
    fields = [f for f in STOP_FIELDS if any(f in c for c in choices)]
    if fields:
        return Finding("policy.stop", OK, f"reports {_STOP_NAMES[fields[0]]}")
    return Finding(
        "policy.stop", WARN,
        "reports neither matched_stop nor stop_reason: a step end is inferred from "
        "finish_reason and the text, and an EOS cannot always be told from the delimiter",
        "use SGLang or vLLM for runs whose terminal reasons matter",
    )  # fmt: skip
