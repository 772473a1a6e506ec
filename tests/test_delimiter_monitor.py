"""The wrong-template detector: a policy that never ends a step at the delimiter stops the run."""

from __future__ import annotations

import pytest

from rebase_cli.domain import Completion, StepBatch
from rebase_cli.errors import ConfigError
from rebase_cli.prompts import load_template
from rebase_cli.runner.context import DelimiterMonitor

TEMPLATE = load_template("llemma-metamath")


def _batch(*completions: Completion) -> StepBatch:
    return StepBatch(completions=completions, prompt_tokens=1, completion_tokens=1, requests=1)


def test_steps_that_run_to_the_token_limit_stop_the_run_with_a_hint() -> None:
    monitor = DelimiterMonitor(threshold=4)
    long_step = Completion("Let me think about this for a long time", "length", None, 256)
    monitor.observe([_batch(long_step, long_step)], TEMPLATE)
    with pytest.raises(ConfigError) as caught:
        monitor.observe([_batch(long_step, long_step)], TEMPLATE)
    assert "--template" in caught.value.one_line()


def test_a_step_end_or_an_answer_in_the_template_format_clears_it() -> None:
    """Once a completion shows the template works (an answer in its format, or a step ended at
    the delimiter), later completions that run to the token limit never stop the run."""
    long_step = Completion("Let me think about this for a long time", "length", None, 256)
    whole = Completion("Step 1: 2 + 2 = 4\nThe answer is: 4", "stop", 2, 20)
    step = Completion("Step 1: 2 + 2 = 4", "stop", "\n", 8)
    for good in (whole, step):
        monitor = DelimiterMonitor(threshold=2)
        monitor.observe([_batch(good)], TEMPLATE)
        assert monitor.step_ends == 1
        for _ in range(5):
            monitor.observe([_batch(long_step, long_step)], TEMPLATE)


def test_the_word_answer_alone_is_not_an_answer() -> None:
    monitor = DelimiterMonitor(threshold=2)
    prose = Completion("I will answer later", "stop", 2, 5)
    with pytest.raises(ConfigError):
        monitor.observe([_batch(prose, prose)], TEMPLATE)
