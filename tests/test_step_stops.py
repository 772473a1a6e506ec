"""Depth-dependent stop strings (`next_step_stop`) and the authors' leaf and token rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebase_cli.domain import Completion, TerminalReason
from rebase_cli.errors import ConfigError
from rebase_cli.prompts import load_template
from rebase_cli.runner.steps import classify_step, ended_at_delimiter

AUTHORS = load_template("authors-llemma")
METAMATH = load_template("llemma-metamath")


def test_stop_string_names_the_step_after_the_one_generated():
    # the authors' stop="Step " + str(depth + 2), depth being the expanded node's
    assert AUTHORS.stops_for(0) == ("Step 2",)
    assert AUTHORS.stops_for(4) == ("Step 6",)
    assert METAMATH.stops_for(4) == METAMATH.stop == ("\n", "</s>")


def test_child_prompt_is_the_parent_plus_the_step_as_written():
    root = AUTHORS.render("What is 2 + 3?")
    assert root == "What is 2 + 3?"  # the raw problem text
    child = AUTHORS.extend(root, "Step 1: 2 + 3 = 5.\n")
    assert child == "What is 2 + 3?Step 1: 2 + 3 = 5.\n"  # the policy writes "Step 2" itself
    assert METAMATH.extend("P", "Step 1: x") == "PStep 1: x\n"


def test_a_numbered_stop_ends_a_step_and_a_bare_delimiter_does_not():
    def done(matched):
        return Completion("Step 1: 2 + 3 = 5.\n", "stop", matched, 9)

    assert ended_at_delimiter(done("Step 2"), AUTHORS)
    assert ended_at_delimiter(done("Step 17"), AUTHORS)
    assert not ended_at_delimiter(done("Step x"), AUTHORS)
    assert not ended_at_delimiter(done(2), AUTHORS)  # EOS token id
    assert not ended_at_delimiter(done("\n"), AUTHORS)
    assert ended_at_delimiter(done("\n"), METAMATH)
    assert not ended_at_delimiter(done("Step 2"), METAMATH)


def test_templates_without_the_field_keep_their_digest():
    # the digest is part of run fingerprints: adding the field must not orphan older runs
    import dataclasses
    import hashlib
    import json

    fields = dataclasses.asdict(METAMATH)
    del fields["next_step_stop"]
    old = hashlib.sha256(
        json.dumps(fields, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()
    assert METAMATH.digest() == old
    assert AUTHORS.digest() != old


def test_next_step_stop_needs_the_step_number(tmp_path: Path):
    path = tmp_path / "t.yaml"
    path.write_text('name: t\nprompt: "{question}"\nstep_delimiter: "\\n"\nnext_step_stop: Step\n')
    with pytest.raises(ConfigError, match="next_step_stop"):
        load_template(str(path))


def classify(text, finish="stop", matched="Step 3", tokens=30, *, rule, max_tokens=1024):
    completion = Completion(text, finish, matched, tokens)
    return classify_step(
        completion, AUTHORS, depth=2, path_tokens=tokens, max_depth=25,
        max_path_tokens=max_tokens, leaf_rule=rule,
    )  # fmt: skip


def test_authors_leaf_rule_is_the_answer_phrase_only():
    last = "Step 2: 9 * 2 = 18.\nThe answer is: 18"
    assert classify(last, matched=2, rule="answer-phrase") == (TerminalReason.ANSWER, "18")
    # EOS alone does not end the path; other answer phrasings do not either
    assert classify("Step 2: 9 * 2 = 18.", matched=2, rule="answer-phrase") == (None, None)
    boxed = "Step 2: so it is \\boxed{18}."
    assert classify(boxed, matched=2, rule="answer-phrase") == (None, None)
    assert classify("the answer is 18", matched=2, rule="answer-phrase") == (None, None)
    # ours: EOS ends it, and \boxed{} is an answer
    assert classify("Step 2: 9 * 2 = 18.", matched=2, rule="template")[0] is TerminalReason.EOS
    assert classify(boxed, matched=2, rule="template") == (TerminalReason.ANSWER, "18")


def test_token_limit_applies_to_what_the_rule_counts():
    # the caller passes the path's or the step's own tokens; 1024 reached ends the path
    step = "Step 2: 9 * 2 = 18.\n"
    assert classify(step, tokens=1024, rule="answer-phrase")[0] is TerminalReason.MAX_TOKENS
    assert classify(step, tokens=256, rule="answer-phrase") == (None, None)
