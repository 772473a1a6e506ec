"""How a question and a path of steps are written for each kind of reward model.

Pure string functions; the layouts follow the PRMs' own model cards:
- Math-Shepherd style (`score` protocol): "{question} {step1}{tag}\\n{step2}{tag}\\n..." where the
  PRM's probability of the good label token right after a tag scores that step.
- a judge (`score` protocol, a template's `prm.score_query` / `prm.score_item`): a language model
  asked whether the newest step is correct; the probability of the good label token as the
  first token of its reply scores that step.
- outcome reward models (`classify`): the template's chat format for them (`classify_chat`)
  when it defines one, else the question and the steps as plain text.
- Qwen2.5-Math-PRM (`pooling`): its chat template with "<extra_0>" after every step.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_cli.prompts import PrmFormat


def shepherd_query(question: str, previous_steps: Sequence[str], prm: PrmFormat) -> str:
    """The shared prefix of a sibling group: the question, then each earlier step + tag."""
    return f"{question} " + "".join(
        f"{step}{prm.step_tag}{prm.step_separator}" for step in previous_steps
    )


def shepherd_item(candidate: str, prm: PrmFormat) -> str:
    """A candidate step as appended to the query; its tag is the scored position."""
    return f"{candidate}{prm.step_tag}"


def score_query(question: str, previous_steps: Sequence[str], prm: PrmFormat) -> str:
    """The `/v1/score` query of a sibling group: the template's judge layout when it has one
    ({question}, and {steps}: each earlier step + separator), else Math-Shepherd's."""
    if prm.score_query is None:
        return shepherd_query(question, previous_steps, prm)
    steps = "".join(f"{step}{prm.step_separator}" for step in previous_steps)
    return prm.score_query.replace("{question}", question).replace("{steps}", steps)


def score_item(candidate: str, prm: PrmFormat) -> str:
    """The `/v1/score` item of one candidate step (the judge layout's {step}, else with the tag)."""
    if prm.score_item is None:
        return shepherd_item(candidate, prm)
    return prm.score_item.replace("{step}", candidate)


def plain_path(question: str, steps: Sequence[str], prm: PrmFormat) -> str:
    """Question and steps as plain text, one step per separator, no tags."""
    return f"{question} " + prm.step_separator.join(steps)


def classify_text(question: str, steps: Sequence[str], prm: PrmFormat) -> str:
    """An outcome reward model's input: the chat turns of `prm.classify_chat` (placeholders
    replaced literally, so braces in maths stay), else `plain_path`."""
    if prm.classify_chat is None:
        return plain_path(question, steps, prm)
    answer = prm.step_separator.join(steps)
    return prm.classify_chat.replace("{question}", question).replace("{answer}", answer)


def qwen_prm_chat(question: str, steps: Sequence[str], prm: PrmFormat) -> str:
    """Qwen2.5-Math-PRM's input: system, user question, and the assistant's steps each followed
    by the pooling step tag (the model emits one [p_bad, p_good] row per tag)."""
    tag = prm.pooling_step_tag
    answer = "".join(f"{step}{tag}" for step in steps)
    return (
        f"<|im_start|>system\n{prm.system}<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        f"<|im_start|>assistant\n{answer}<|im_end|>\n"
    )
