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
    return template.is_step_end(completion.matched_stop)


# The authors' leaf test (`"The answer is" in text`, case-sensitive).
AUTHORS_LEAF_PHRASE = "The answer is"


def classify_step(
    completion: Completion,
    template: PromptTemplate,
    *,
    depth: int,
    path_tokens: int,
    max_depth: int,
    max_path_tokens: int,
    leaf_rule: str = "template",
) -> tuple[TerminalReason | None, str | None]:
    """(terminal reason, extracted answer) of a new node at `depth`; (None, None) if it stays open.

    Order matters: an answer wins over EOS, EOS over the token and depth limits. `path_tokens`
    is what the path-token rule counts (the whole path's, or the step's own). With leaf_rule
    "answer-phrase" (the authors' code) only a step containing "The answer is" ends the path
    (its answer extracted as usual, None if none parses) and EOS alone does not."""
    if leaf_rule == "answer-phrase":
        if AUTHORS_LEAF_PHRASE in completion.text:
            return TerminalReason.ANSWER, extract_answer(
                completion.text, answer_regex=template.answer_regex
            )
        return _limit_reason(depth, path_tokens, max_depth, max_path_tokens), None
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
    return _limit_reason(depth, path_tokens, max_depth, max_path_tokens), None


def _limit_reason(
    depth: int, path_tokens: int, max_depth: int, max_path_tokens: int
) -> TerminalReason | None:
    if path_tokens >= max_path_tokens:
        return TerminalReason.MAX_TOKENS
    if depth >= max_depth:
        return TerminalReason.MAX_DEPTH
    return None
