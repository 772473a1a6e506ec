"""The simulated policy: continues a prompt with steps derived from the reference solution.

Where a prompt stands is read from the prompt itself: the question (found with the template,
else by scanning for a known question), then the steps already written after the rendered root
prompt. The path is *on track* while every existing step equals the reference step at its
depth (see `bank.norm_body`); each newly written step leaves the track with the problem's
per-step error probability, and a path off track stays wrong (every later step has its result
number changed) and ends with a wrong answer from the reference's small wrong-answer set,
picked by a hash of the first wrong step, so paths that went wrong the same way agree.

Determinism: one choice is a pure function of (prompt, the seed it samples with, sampling
parameters). Which seed each choice of a request gets is the flavour's business
(`sim.flavours.choice_seeds`). At temperature 0 (greedy) the seed is ignored, as with a real
model.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rebase_cli.prompts import PromptTemplate
from rebase_cli.sim.bank import Bank, Reference, RefStep, norm_body, perturb, stable_hash
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.stepformat import StepFormat
from rebase_cli.sim.tokenizer import token_ids, truncate_tokens

MAX_STEP_ERROR = 0.95
# Wording variants: a real sampler rarely writes the same sentence twice. Weights favour
# the plain form; greedy decoding always takes it.
_CONNECTORS = ("", "", "", "So ", "Then ", "Next, ", "Now ", "Thus ")
# First words that read right in lower case after a connector ("So the cost ...").
_COMMON_FIRST_WORDS = frozenset(
    (
        *("the", "he", "she", "they", "it", "we", "there", "this", "that", "his", "her"),
        *("their", "its", "in", "if", "since", "each", "a", "an", "to", "for", "after"),
        *("on", "at", "then", "these", "those", "our", "my", "you", "one", "all", "every"),
    )
)
_WRONG_ANSWER_WEIGHTS = (0.55, 0.30, 0.15)


@dataclass(frozen=True)
class Choice:
    """One generated choice, as the wire protocol reports it."""

    text: str
    finish_reason: str  # "stop" or "length"
    matched_stop: str | int | None
    token_ids: tuple[int, ...]  # the generated tokens, the stop or EOS token included

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


@dataclass(frozen=True)
class Position:
    """Where a prompt stands: the reference it follows and the steps already written."""

    reference: Reference
    steps: tuple[str, ...]
    partial: bool  # the prompt ends inside a step (no delimiter after the last one)


def prompt_digest(prompt: str) -> int:
    """A stable 64-bit digest of a prompt, the prompt's part of every choice seed."""
    return int.from_bytes(hashlib.blake2b(prompt.encode(), digest_size=8).digest(), "little")


class PolicyModel:
    """Generation over the references of a `Bank` under one prompt template."""

    def __init__(self, bank: Bank, template: PromptTemplate, config: SimConfig) -> None:
        self.bank = bank
        self.template = template
        self.format = StepFormat(template)
        self.error_rate = config.error_rate
        self.eos_token_id = config.eos_token_id
        self._tail = template.prompt.partition("{question}")[2]

    # -- reading a prompt -------------------------------------------------------------------

    def locate(self, prompt: str) -> Position:
        """The reference a prompt follows and the steps already in it."""
        question = self.template.question_of(prompt)
        if question is not None and (reference := self.bank.get(question)) is not None:
            root = self.template.render(question)
            if prompt.startswith(root):
                return self._position(reference, prompt[len(root) :])
        found = self.bank.find_in(prompt)
        if found is not None:
            reference, end = found
            rest = prompt[end:]
            if self._tail and rest.startswith(self._tail):
                rest = rest[len(self._tail) :]
            elif question is None:
                # Another prompt format: the rest of the question's line is not a step.
                rest = rest.partition(self.template.step_delimiter)[2]
            return self._position(reference, rest)
        if question is not None:
            root = self.template.render(question)
            generated = prompt[len(root) :] if prompt.startswith(root) else ""
            return self._position(self.bank.reference(question), generated)
        return Position(self.bank.reference(prompt), (), False)

    def _position(self, reference: Reference, generated: str) -> Position:
        delimiter = self.template.step_delimiter
        steps = tuple(self.template.split_steps(generated))
        partial = bool(generated.strip()) and not generated.endswith(delimiter)
        return Position(reference, steps, partial)

    def step_error(self, reference: Reference, temperature: float, top_p: float) -> float:
        """Per-step error probability: the global rate scaled by the problem's difficulty
        (mean factor 1), raised by temperatures above 1, lowered by nucleus truncation."""
        rate = self.error_rate * (0.25 + 1.5 * reference.difficulty)
        rate *= max(1.0, temperature) * (0.5 + 0.5 * min(max(top_p, 0.0), 1.0))
        return min(MAX_STEP_ERROR, rate)

    # -- writing ----------------------------------------------------------------------------

    def continuation(
        self, position: Position, rng: random.Random, error: float, greedy: bool
    ) -> Iterator[str]:
        """The remaining steps of the path, final answer line last (lazily)."""
        reference, fmt = position.reference, self.format
        if any(fmt.answer_of(step) is not None for step in position.steps):
            return  # the path already gave its answer: only EOS is left
        on_track, first_wrong = True, ""
        for depth, step in enumerate(position.steps):
            if depth >= len(reference.steps) or fmt.norm(step) != reference.steps[depth].norm:
                on_track, first_wrong = False, fmt.norm(step)
                break
        for depth in range(len(position.steps), len(reference.steps)):
            ref_step = reference.steps[depth]
            if on_track and ref_step.target is not None and rng.random() < error:
                on_track = False
            if on_track:
                body = ref_step.body
            else:
                body = self._wrong_body(ref_step, rng)
                first_wrong = first_wrong or norm_body(body)
            connector = "" if greedy else rng.choice(_CONNECTORS)
            first_word = body.split(" ", 1)[0]
            if connector and first_word.lower() in _COMMON_FIRST_WORDS:
                body = body[0].lower() + body[1:]
            yield self.template.format_step(depth + 1, connector + body)
        yield self.template.format_answer(
            reference.answer if on_track else self._wrong_answer(reference, first_wrong)
        )

    @staticmethod
    def _wrong_body(step: RefStep, rng: random.Random) -> str:
        if step.target is None:
            return step.body
        start, end = step.target
        wrong = perturb(step.body[start:end], rng.getrandbits(16))
        return step.body[:start] + wrong + step.body[end:]

    @staticmethod
    def _wrong_answer(reference: Reference, first_wrong: str) -> str:
        options = reference.wrong_answers
        if not options:
            return reference.answer + "0"
        u = stable_hash("answer", reference.question, first_wrong) / 2.0**64
        cumulative = 0.0
        for option, weight in zip(options, _WRONG_ANSWER_WEIGHTS, strict=False):
            cumulative += weight / sum(_WRONG_ANSWER_WEIGHTS[: len(options)])
            if u < cumulative:
                return option
        return options[-1]

    def complete(
        self,
        prompt: str,
        *,
        seeds: Sequence[int],
        max_tokens: int,
        stop: Sequence[str],
        temperature: float,
        top_p: float,
    ) -> list[Choice]:
        """One choice per seed continuing `prompt`, each stopped at the earliest stop string,
        at the end of the solution (EOS), or after `max_tokens` tokens. Equal seeds give equal
        choices."""
        position = self.locate(prompt)
        error = self.step_error(position.reference, temperature, top_p)
        greedy = temperature <= 0.0 or top_p <= 0.0
        digest = prompt_digest(prompt)
        delimiter = self.template.step_delimiter
        one_step = delimiter in stop
        choices = []
        for seed in seeds:
            rng = random.Random(digest if greedy else stable_hash(seed, 0, digest))
            steps = self.continuation(position, rng, error, greedy)
            if one_step:
                first = next(steps, None)
                if first is None:
                    text = ""
                else:
                    text = first + (delimiter if next(steps, None) is not None else "")
            else:
                text = delimiter.join(steps)
            if position.partial:
                text = delimiter + text
            choices.append(self._finish(text, stop, max_tokens))
        return choices

    def _finish(self, text: str, stop: Sequence[str], max_tokens: int) -> Choice:
        matched: str | int | None = self.eos_token_id
        cut = len(text)
        for candidate in stop:
            where = text.find(candidate) if candidate else -1
            if 0 <= where < cut:
                cut, matched = where, candidate
        text = text[:cut]
        ids = token_ids(text)
        if len(ids) + 1 > max_tokens:  # the stop (or EOS) token itself needs a slot too
            text = truncate_tokens(text, max_tokens)
            return Choice(text, "length", None, token_ids(text)[:max_tokens])
        end = self.eos_token_id if isinstance(matched, int) else token_ids(matched)[0]
        return Choice(text, "stop", matched, (*ids, end))
