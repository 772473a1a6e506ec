"""The `smollm2-chat` template that `rebase models prepare smollm2` recommends."""

from __future__ import annotations

from rebase_cli.grading import extract_answer
from rebase_cli.models import MODELS
from rebase_cli.prompts import load_template


def test_prompt_is_a_chatml_turn_the_model_answers_line_by_line() -> None:
    template = load_template(MODELS["smollm2"].template)
    question = "Tom has 3 apples and buys 4 more. How many apples does he have?"
    prompt = template.render(question)

    assert prompt.endswith(f"{question}<|im_end|>\n<|im_start|>assistant\n")
    assert prompt.count(question) == 1 and template.question_of(prompt) == question
    assert template.stop == ("\n", "<|im_end|>")
    # The worked example is written the way steps are read back: one per line, then the answer.
    example = prompt.split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
    assert template.split_steps(example)[-1] == template.format_answer("72")
    assert extract_answer(template.format_answer("72")) == "72"
    child = template.extend(prompt, "He has 3 + 4 = 7 apples.")
    assert child.startswith(prompt) and child.endswith("apples.\n")
