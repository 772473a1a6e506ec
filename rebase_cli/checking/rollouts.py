"""Rollouts: one path per dataset question, grown step by step as a run grows it (the run's
`PolicyClient` and step rules), to see whether the policy ends steps at the template's
delimiter and gives an answer the template can read within the limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rebase_cli.checking.findings import BLOCKER, OK, WARN, Finding, Tally
from rebase_cli.clients.policy import PolicyClient
from rebase_cli.domain import Problem, TerminalReason
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.steps import classify_step, ended_at_delimiter


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
            prompt, 1, stop=template.stop, max_new_tokens=max_step_tokens,
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
