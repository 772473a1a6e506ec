"""Reward probes: are the template's label tokens the PRM's own single tokens, and does the
PRM score a correct and a wrong step differently. The scoring goes through the run's own
reward adapter (same query layout, same label ids)."""

from __future__ import annotations

import re

import openai

from rebase_cli.checking.findings import BLOCKER, OK, SKIPPED, WARN, Finding, Tally
from rebase_cli.clients.retry import MalformedResponse
from rebase_cli.clients.reward import HttpReward
from rebase_cli.clients.transport import Endpoint, parse_json
from rebase_cli.domain import Problem
from rebase_cli.prompts import PromptTemplate

SAME_SCORE = 1e-6


async def tokenize(endpoint: Endpoint, text: str, tally: Tally) -> list[int] | None:
    """The ids of `text` without special tokens by POST /tokenize (SGLang, vLLM, ours); None
    when the server has no such route."""

    async def send() -> str:
        body = {"prompt": text, "add_special_tokens": False}
        try:
            server = endpoint.current()  # the first live server of a role given several URLs
            return await server.client.post(server.url + "/tokenize", body=body, cast_to=str)
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


async def label_finding(
    reward: HttpReward, template: PromptTemplate, tally: Tally, model: str | None = None
) -> Finding:
    """Are the template's label tokens single, distinct tokens of the reward model, with the
    ids the template sends? (The simulator's PRM, model `sim-...`, has no tokenizer and reads
    any ids.)"""
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
        if ids is None and (model or "").startswith("sim-"):
            return Finding(
                "reward.labels", SKIPPED, "the simulator's PRM has no tokenizer: any ids work"
            )
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
