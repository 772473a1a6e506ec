"""The simulated process reward model.

A step's score is sigmoid(signal * label + noise * z), where z is a standard normal drawn
from a hash of (server seed, question, the normalised path up to and including the step), so
one path always gets the same scores and PRM quality is set by signal/noise.

The label of a step of a known question follows the reference path (Math-Shepherd style:
after the first wrong step every later step is wrong too):
  +1  every step so far equals the reference step at its depth, or it is an answer line with
      the right answer on such a path;
  -1  an answer line with a wrong answer, a step that differs from the reference only in its
      numbers (what the simulated policy writes when it errs), or any step after one of those;
  otherwise the step's arithmetic claims decide (+1 all hold, -1 one fails, 0 none), which is
      also how every step of an unknown question is judged. This lets a real policy's steps
      be scored on a CPU.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from statistics import NormalDist

from rebase_cli.prompts import PromptTemplate
from rebase_cli.sim.arith import check_claims
from rebase_cli.sim.bank import Bank, Reference, mask_numbers, stable_hash
from rebase_cli.sim.config import SimConfig
from rebase_cli.sim.stepformat import StepFormat, same_answer

_ASSISTANT = "<|im_start|>assistant"
_CHAT_TOKEN = re.compile(r"<\|[^|<>]{1,40}\|>")
_STANDARD_NORMAL = NormalDist()
RAW_LABEL_MASS = 0.98  # share of the next-token distribution the two label tokens hold
JUDGED_MEMORY = 50_000  # path prefixes remembered by PrmModel._judge


@dataclass(frozen=True)
class ParsedPath:
    """A PRM input: the reference of its question (None if unknown), its steps, and the
    indices of the steps that were followed by a step tag (one pooling row each)."""

    reference: Reference | None
    steps: tuple[str, ...]
    tagged: tuple[int, ...] = ()


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class _Judged:
    """What judging a path prefix left: its labels and logits, and the state the next step
    is judged in (the noise hash chain's key, whether the path is still on the reference and
    whether it has derailed)."""

    reference: Reference | None
    key: int
    on_track: bool
    derailed: bool
    labels: tuple[int, ...]
    logits: tuple[float, ...]


class PrmModel:
    """Scores steps of paths for one template's step and tag format."""

    def __init__(self, bank: Bank, template: PromptTemplate, config: SimConfig) -> None:
        self.bank = bank
        self.template = template
        self.format = StepFormat(template)
        self.signal = config.prm_signal
        self.noise = config.prm_noise
        self.seed = config.seed
        tags = {template.prm.step_tag.strip(), template.prm.pooling_step_tag.strip()}
        self.tags = tuple(sorted((t for t in tags if t), key=len, reverse=True))
        self.pooling_tag = template.prm.pooling_step_tag
        self._tail = template.prompt.partition("{question}")[2].strip()
        self._memo: dict[tuple[int, tuple[str, ...]], _Judged] = {}

    # -- reading ----------------------------------------------------------------------------

    def parse(self, text: str) -> ParsedPath:
        """Find the question and split what follows it into steps (at step tags when there
        are any, else at the template's step delimiter)."""
        found = self.bank.find_in(text)
        reference, rest = (found[0], text[found[1] :]) if found else (None, text)
        located = reference is not None  # whether `rest` starts after the question
        if not located:
            question = self.template.question_of(text)
            root = self.template.render(question) if question is not None else None
            if root is not None and text.startswith(root):
                rest, located = text[len(root) :], True
        if _ASSISTANT in rest:  # chat format: the steps are the assistant's turn
            rest, located = rest[rest.rindex(_ASSISTANT) + len(_ASSISTANT) :], True
        rest = _CHAT_TOKEN.sub("\n", rest).strip()
        if self._tail and rest.startswith(self._tail):
            rest = rest[len(self._tail) :]
        # Steps end at a tag or at the step delimiter (a step never contains the delimiter, so
        # a prefix whose earlier steps are untagged, like a policy prompt, splits right too).
        tag = next((t for t in self.tags if t in rest), None)
        pieces = rest.split(tag) if tag else [rest]
        delimiter = self.template.step_delimiter
        steps: list[str] = []
        tagged: list[int] = []
        for number, piece in enumerate(pieces):
            parts = [part.strip() for part in piece.split(delimiter) if part.strip()]
            is_tagged = number < len(pieces) - 1
            if is_tagged and not parts:
                parts = [""]  # an empty tagged step keeps the pooling rows aligned
            steps.extend(parts)
            if is_tagged:
                tagged.append(len(steps) - 1)
        if not located and len(steps) > 1 and (not tagged or tagged[0] > 0):
            # An unknown question in an unknown format: its first line is the question.
            steps, tagged = steps[1:], [index - 1 for index in tagged]
        return ParsedPath(reference, tuple(steps), tuple(tagged))

    # -- judging ----------------------------------------------------------------------------

    def labels(self, path: ParsedPath) -> list[int]:
        """+1 / -1 / 0 for every step of the path (see the module docstring)."""
        return list(self._judge(path.reference, path.steps).labels)

    def logits(self, path: ParsedPath) -> list[float]:
        """signal * label + noise * z for every step."""
        return list(self._judge(path.reference, path.steps).logits)

    def _judge(self, reference: Reference | None, steps: tuple[str, ...]) -> _Judged:
        """The judgement of `steps` under `reference`, step by step from the judgement of the
        path without its last step. A step's label and noise depend only on the steps up to
        it, so sibling candidates (and the next level's paths) share their prefix's work;
        judgements are remembered, the memory cleared when full."""
        memo_key = (id(reference), steps)
        known = self._memo.get(memo_key)
        if known is not None and known.reference is reference:
            return known
        if steps:
            before = self._judge(reference, steps[:-1])
            judged = self._next(before, steps[-1], len(steps) - 1)
        else:
            key = stable_hash(self.seed, reference.question if reference else "")
            judged = _Judged(reference, key, reference is not None, False, (), ())
        if len(self._memo) >= JUDGED_MEMORY:
            self._memo.clear()
        self._memo[memo_key] = judged
        return judged

    def _next(self, before: _Judged, step: str, depth: int) -> _Judged:
        """`before` extended by `step` at `depth` (the rules of the module docstring)."""
        reference, fmt = before.reference, self.format
        on_track, derailed = before.on_track, before.derailed
        norm = fmt.norm(step)
        answer = fmt.answer_of(step)
        if reference is not None and answer is not None:
            right = on_track and same_answer(answer, reference.answer)
            label = 1 if right else -1
            on_track = on_track and right
        elif derailed:
            label = -1
        else:
            label = None
            if on_track and depth < len(reference.steps):  # type: ignore[union-attr]
                expected = reference.steps[depth]  # type: ignore[union-attr]
                if norm == expected.norm:
                    label = 1
                else:
                    on_track = False
                    if mask_numbers(norm) == expected.masked:
                        derailed, label = True, -1
            if label is None:
                on_track = False
                label = check_claims(step).label
        key = stable_hash(before.key, norm)
        u = min(max(key / 2.0**64, 1e-12), 1.0 - 1e-12)
        logit = self.signal * label + self.noise * _STANDARD_NORMAL.inv_cdf(u)
        return _Judged(
            reference,
            key,
            on_track,
            derailed,
            (*before.labels, label),
            (*before.logits, logit),
        )

    def step_scores(self, text: str) -> list[float]:
        """P(good) of every step of the path in `text`."""
        return [sigmoid(x) for x in self.logits(self.parse(text))]

    def last_logit(self, text: str) -> float:
        """The raw reward of the newest step of `text` (0.0 when it has no step)."""
        logits = self.logits(self.parse(text))
        return logits[-1] if logits else 0.0

    def label_probs(
        self, text: str, label_token_ids: list[int], good: int, bad: int, softmax: bool
    ) -> list[float]:
        """Probabilities of the label tokens after `text` (SGLang /v1/score semantics):
        the good label carries P(good step), the bad one the rest, other ids almost nothing.
        With `softmax` they are renormalised over the requested ids."""
        p = sigmoid(self.last_logit(text))
        probs = [
            RAW_LABEL_MASS * (p if token == good else (1.0 - p) if token == bad else 1e-6)
            for token in label_token_ids
        ]
        if softmax:
            total = sum(probs)
            probs = [value / total for value in probs]
        return probs

    def pooling_rows(self, text: str) -> list[list[float]]:
        """vLLM token_classify rows: one [P(bad), P(good)] per tagged step."""
        path = self.parse(text)
        logits = self.logits(path)
        return [[1.0 - sigmoid(logits[i]), sigmoid(logits[i])] for i in path.tagged]
