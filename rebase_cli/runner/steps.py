"""Deciding what a returned step means: step end, solution end (EOS), answer, or a limit."""

from __future__ import annotations

from rebase_cli.domain import Completion, TerminalReason
from rebase_cli.grading import extract_answer
from rebase_cli.prompts import PromptTemplate


def ended_at_delimiter(completion: Completion, template: PromptTemplate) -> bool:
    """True when the step stopped at the template's step delimiter.

    SGLang reports the stop string in `matched_stop` (an int there is the EOS token); vLLM
    reports it in `stop_reason`, whose null means EOS (`completion.eos`). A server that reports
    neither is trusted to have stopped at the delimiter when it says `stop` and wrote
    something (an empty `stop` completion is the model ending its solution)."""
    if completion.finish_reason != "stop" or completion.eos:
        return False
    if completion.matched_stop is None:
        return bool(completion.text.strip())
    return completion.matched_stop == template.step_delimiter


def classify_step(
    completion: Completion,
    template: PromptTemplate,
    *,
    depth: int,
    path_tokens: int,
    max_depth: int,
    max_path_tokens: int,
) -> tuple[TerminalReason | None, str | None]:
    """(terminal reason, extracted answer) of a new node at `depth`; (None, None) if it stays open.

    Order matters: an answer wins over EOS, EOS over the token and depth limits."""
    eos = completion.finish_reason == "stop" and not ended_at_delimiter(completion, template)
    answer = extract_answer(completion.text, answer_regex=template.answer_regex)
    if answer is None and eos and template.last_number_fallback:
        answer = extract_answer(
            completion.text, answer_regex=template.answer_regex, last_number_fallback=True
        )
    if answer is not None:
        return TerminalReason.ANSWER, answer
    if eos:
        return TerminalReason.EOS, None
    if path_tokens >= max_path_tokens:
        return TerminalReason.MAX_TOKENS, None
    if depth >= max_depth:
        return TerminalReason.MAX_DEPTH, None
    return None, None
