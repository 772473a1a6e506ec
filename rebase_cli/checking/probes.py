"""The probes of `rebase check`, each a short conversation with a server that ends in Findings.

Probes see the servers exactly as a run does: the policy's raw /v1/completions answers through
the project's `Endpoint` (same client, same retries), the PRM through the run's own reward
adapter (same query layout, same label token ids), the rollouts through `PolicyClient` and the
step rules of the runner. Nothing here writes to the database.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from rebase_cli.checking.findings import BLOCKER, OK, SKIPPED, WARN, Finding
from rebase_cli.clients.policy import STOP_FIELDS, PolicyClient
from rebase_cli.clients.retry import MalformedResponse
from rebase_cli.clients.reward import HttpReward
from rebase_cli.clients.transport import Endpoint, parse_json
from rebase_cli.domain import Problem, TerminalReason
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.steps import classify_step, ended_at_delimiter

PROBE_TOKENS = 12  # tokens per sampling probe: enough to differ, cheap on a CPU
SAME_SCORE = 1e-6
_STOP_NAMES = {"matched_stop": "matched_stop (SGLang)", "stop_reason": "stop_reason (vLLM)"}


@dataclass
class Tally:
    """Retries the probes needed (a fault the server answered with costs one): a run stores
    them beside its own, so every fault a server injected is accounted for."""

    retries: int = 0


# -- server kind ---------------------------------------------------------------------------------


async def get_json(endpoint: Endpoint, path: str) -> Any | None:
    """GET `path` once; its JSON, or None when the route is not served or not JSON."""
    try:
        text = await endpoint.client.get(endpoint.url + path, cast_to=str)
        return parse_json(text)
    except (openai.APIError, MalformedResponse):
        return None


async def server_kind(endpoint: Endpoint) -> str:
    """What answers at `endpoint`, from the routes each server family serves: the simulator's
    /model_info says `simulated`; our reward server's and SGLang's /server_info carry `engine`
    or `version`; vLLM serves /version."""
    info = await get_json(endpoint, "/model_info")
    if isinstance(info, dict) and info.get("simulated"):
        return "rebase simulator (SIMULATED)"
    info = await get_json(endpoint, "/server_info")
    if isinstance(info, dict):
        if info.get("engine") == "rebase-transformers":
            return f"rebase transformers reward server {info.get('version', '?')}"
        if isinstance(info.get("version"), str):
            return f"SGLang {info['version']}"
    info = await get_json(endpoint, "/version")
    if isinstance(info, dict) and isinstance(info.get("version"), str):
        return f"vLLM {info['version']}"
    return "OpenAI-compatible server (kind and version not reported)"


async def kind_finding(role: str, endpoint: Endpoint, model: str | None) -> Finding:
    kind = await server_kind(endpoint)
    return Finding(f"{role}.server", OK, f"{kind} at {endpoint.url}, model {model or '?'}")


# -- policy: n, seed, stop -----------------------------------------------------------------------


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


async def policy_findings(
    endpoint: Endpoint, model: str, prompt: str, *, stop: Sequence[str], temperature: float,
    seed: int, tally: Tally,
) -> list[Finding]:  # fmt: skip
    """n honoured, seed honoured (and sampling on), stop reporting: six short
    requests, seven samples."""
    args = {"stop": stop, "temperature": temperature, "tally": tally}
    pair = await complete(endpoint, model, prompt, n=2, seed=seed, **args)
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
            "policy.n", WARN, f"ignores n: {len(pair.choices)} choice for n=2",
            "the search then asks once per sample: more requests, same trees",
        )  # fmt: skip
    if temperature > 0 and pair.texts[0] == pair.texts[1]:
        return Finding(
            "policy.n", WARN,
            "the 2 choices of one seeded request are identical (they share the seed, as SGLang "
            "does under --enable-deterministic-inference): siblings would be copies",
            "run the search with --samples-per-request 1 (one seed per child)",
        )  # fmt: skip
    return Finding("policy.n", OK, "n=2 gives 2 different choices")


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


# -- reward: label tokens, scores that vary ------------------------------------------------------


async def tokenize(endpoint: Endpoint, text: str, tally: Tally) -> list[int] | None:
    """The ids of `text` without special tokens by POST /tokenize (SGLang, vLLM, ours); None
    when the server has no such route."""

    async def send() -> str:
        body = {"prompt": text, "add_special_tokens": False}
        try:
            return await endpoint.client.post(endpoint.url + "/tokenize", body=body, cast_to=str)
        except openai.NotFoundError:
            return "null"

    def parse(body: str) -> list[int] | None:
        data = parse_json(body)
        if data is None:
            return None
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise MalformedResponse("no `tokens` list of ids", body)
        return tokens

    tokens, retries = await endpoint.call("/tokenize", send, parse)
    tally.retries += retries
    return tokens


async def label_finding(reward: HttpReward, template: PromptTemplate, tally: Tally) -> Finding:
    """Are the template's label tokens single, distinct tokens of the reward model, with the
    ids the template sends?"""
    prm = template.prm
    if reward.protocol != "score":
        return Finding("reward.labels", SKIPPED, f"the {reward.protocol} protocol reads no labels")
    if prm.good_token_id == prm.bad_token_id:
        return Finding(
            "reward.labels", BLOCKER,
            f"the template gives both label tokens the id {prm.good_token_id}: every score "
            "would be 0.5",
            "set prm.good_token_id and prm.bad_token_id to two different ids",
        )  # fmt: skip
    seen: list[str] = []
    for label, wanted, key in (
        (prm.good_token, prm.good_token_id, "good_token_id"),
        (prm.bad_token, prm.bad_token_id, "bad_token_id"),
    ):
        ids = await tokenize(reward.endpoint, label, tally)
        if ids is None:
            return Finding(
                "reward.labels", WARN,
                "cannot verify the label tokens: the reward server has no /tokenize",
                "check by hand that the template's label ids are the PRM tokenizer's",
            )  # fmt: skip
        if len(ids) != 1:
            return Finding(
                "reward.labels", BLOCKER,
                f"label {label!r} is {len(ids)} tokens {ids} in the reward model's tokenizer, "
                "so no single next-token probability scores it",
                "pick label tokens that are single tokens in the PRM's tokenizer (the template's "
                "prm.good_token / prm.bad_token)",
            )  # fmt: skip
        if ids[0] != wanted:
            return Finding(
                "reward.labels", BLOCKER,
                f"label {label!r} is token {ids[0]} in the reward model's tokenizer, but the "
                f"template sends {wanted}: the PRM would be read at the wrong token",
                f"set prm.{key}: {ids[0]} in template {template.name!r}",
            )  # fmt: skip
        seen.append(f"{label!r} = {ids[0]}")
    return Finding("reward.labels", OK, f"{', '.join(seen)}: single, distinct tokens")


def wrong_answer(reference: str) -> str:
    """An answer that is surely not `reference`: its last number plus 7, else a zero added."""
    numbers = list(re.finditer(r"-?\d+", reference))
    if not numbers:
        return f"{reference}0" if reference else "0"
    last = numbers[-1]
    return reference[: last.start()] + str(int(last.group()) + 7) + reference[last.end() :]


_CALCULATOR_NOTE = re.compile(r"<<[^<>]*>>")


def reference_steps(problem: Problem) -> list[str]:
    """The reference solution's steps when it is written one step per line (GSM8K: its lines,
    calculator notes and the `####` line dropped); none for prose solutions."""
    lines = [line.strip() for line in problem.solution.splitlines()]
    steps = [
        _CALCULATOR_NOTE.sub("", line) for line in lines if line and not line.startswith("####")
    ]
    return steps if len(steps) > 1 or "<<" in problem.solution else []


async def variation_finding(
    reward: HttpReward, template: PromptTemplate, problem: Problem, tally: Tally
) -> Finding:
    """Score a correct and a deliberately wrong final step of a dataset question, after its
    reference steps, as one sibling group through the run's own adapter: equal scores mean a
    PRM that cannot steer the search."""
    previous = [template.format_step(k, body) for k, body in enumerate(reference_steps(problem), 1)]
    last = len(previous) + 1
    right = template.format_step(last, template.format_answer(problem.reference_answer))
    wrong_text = template.format_answer(wrong_answer(problem.reference_answer))
    wrong = template.format_step(last, wrong_text)
    batch = await reward.score(problem.question, previous, [right, wrong])
    tally.retries += batch.retries
    good, bad = batch.scores
    shown = f"correct step {good:.4f}, wrong step {bad:.4f}"
    if abs(good - bad) <= SAME_SCORE:
        return Finding(
            "reward.scores", BLOCKER,
            f"the PRM gives a correct and a wrong step the same score ({shown}): REBASE would "
            "allocate blindly",
            "check the reward model, --reward-protocol and the template's prm section (label "
            "tokens, step tag)",
        )  # fmt: skip
    if good < bad:
        return Finding(
            "reward.scores", WARN, f"scores vary but prefer the wrong step ({shown})",
            "a weak judge: expect accuracy near the policy's own",
        )  # fmt: skip
    return Finding("reward.scores", OK, f"scores vary ({shown})")


# -- policy: rollouts on dataset questions -------------------------------------------------------


@dataclass(frozen=True)
class Rollout:
    """One greedy-or-sampled path of a question, step by step, as a run would grow it."""

    problem: Problem
    steps: int
    delimiter_ends: int
    answer: str | None
    reason: TerminalReason | None
    one_piece_answer: bool  # the answer came in a step that did not end at the delimiter

    def describe(self) -> str:
        end = f"answer {self.answer}" if self.answer is not None else (
            self.reason.value if self.reason is not None else "open"
        )  # fmt: skip
        return (
            f"problem {self.problem.index}: {self.delimiter_ends}/{self.steps} steps ended at "
            f"the delimiter, {end} (reference {self.problem.reference_answer})"
        )


async def rollout(
    policy: PolicyClient, template: PromptTemplate, problem: Problem, *, max_step_tokens: int,
    max_tokens: int, max_depth: int, temperature: float, top_p: float, seed: int, tally: Tally,
) -> Rollout:  # fmt: skip
    prompt = template.render(problem.question)
    path_tokens = delimiter_ends = 0
    for depth in range(1, max_depth + 1):
        batch = await policy.expand(
            prompt, 1, stop=template.stop, max_tokens=max_step_tokens,
            temperature=temperature, top_p=top_p, seed=seed + depth,
        )  # fmt: skip
        tally.retries += batch.retries
        completion = batch.completions[0]
        path_tokens += completion.completion_tokens
        at_delimiter = ended_at_delimiter(completion, template)
        delimiter_ends += at_delimiter
        reason, answer = classify_step(
            completion, template, depth=depth, path_tokens=path_tokens,
            max_depth=max_depth, max_path_tokens=max_tokens,
        )  # fmt: skip
        if reason is not None:
            one_piece = answer is not None and not at_delimiter and delimiter_ends == 0
            return Rollout(problem, depth, delimiter_ends, answer, reason, one_piece)
        prompt = template.extend(prompt, completion.text)  # the policy wrote its own prefix
    return Rollout(problem, max_depth, delimiter_ends, None, None, False)


def rollout_findings(rollouts: Sequence[Rollout], template: PromptTemplate) -> list[Finding]:
    details = "; ".join(r.describe() for r in rollouts)
    delimiter = template.step_delimiter
    if not any(r.delimiter_ends for r in rollouts):
        if any(r.one_piece_answer for r in rollouts):
            step = Finding(
                "policy.delimiter", WARN,
                f"no step ended at the delimiter {delimiter!r}, the answer came in one piece: "
                f"REBASE gets a single level to balance ({details})",
                "a template whose examples put one step per delimiter splits solutions into steps",
            )  # fmt: skip
        else:
            step = Finding(
                "policy.delimiter", BLOCKER,
                f"the policy never ended a step at the delimiter {delimiter!r} of template "
                f"{template.name!r} ({details})",
                "pick the template that matches the model with --template",
            )  # fmt: skip
    else:
        step = Finding("policy.delimiter", OK, details)
    answered = [r for r in rollouts if r.answer is not None]
    finished_unread = [r for r in rollouts if r.reason == TerminalReason.EOS]
    if not answered and finished_unread:
        # The model ended its solution and the template read no answer in it: a format
        # mismatch, which no budget fixes.
        answer = Finding(
            "policy.answer", BLOCKER,
            f"solutions ended without an answer the template can read ({details})",
            "fix the template's answer_format / answer_regex, or pick the template that "
            "matches the model with --template",
        )  # fmt: skip
    elif len(answered) < len(rollouts):
        answer = Finding(
            "policy.answer", WARN,
            f"{len(answered)} of {len(rollouts)} paths gave a readable answer within the limits "
            f"({details})",
            "paths cut at max_depth / max_tokens: raise --max-depth / --max-tokens / "
            "--max-step-tokens if most paths end there",
        )  # fmt: skip
    else:
        answer = Finding(
            "policy.answer", OK,
            "answers read: " + ", ".join(f"{r.answer} (ref {r.problem.reference_answer})"
                                         for r in answered),
        )  # fmt: skip
    return [step, answer]
