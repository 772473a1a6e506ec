"""The simulated policy and PRM as pure functions (no HTTP): determinism, step and stop
semantics, judging of foreign text, and the statistics the search relies on."""

from __future__ import annotations

import os
from collections import Counter
from statistics import mean

import pytest

from rebase_cli.sim import SimConfig
from rebase_cli.sim.app import Simulator, load_problems
from rebase_cli.sim.arith import check_claims
from rebase_cli.sim.stepformat import same_answer
from rebase_cli.sim.tokenizer import count_tokens, truncate_tokens
from tests.conftest import SHARED_DATA

STOP = ["\n", "</s>"]


@pytest.fixture(scope="module")
def problems():
    with pytest.MonkeyPatch.context() as mp:
        if not os.environ.get("REBASE_DATA_DIR"):
            mp.setenv("REBASE_DATA_DIR", str(SHARED_DATA))
        return load_problems(["gsm8k", "math500"])


@pytest.fixture(scope="module")
def gsm8k(problems):
    return [p for p in problems if p.source_id.startswith("gsm8k")]


@pytest.fixture(scope="module")
def sim(problems) -> Simulator:
    return Simulator(SimConfig(role="both"), problems)


def complete(sim: Simulator, prompt: str, *, n: int = 1, seed: int = 0, **kwargs):
    """n choices sampled with seeds seed, seed + 1, ... (the vLLM rule; the model itself only
    sees one seed per choice)."""
    params = {"max_tokens": 512, "stop": STOP, "temperature": 1.0, "top_p": 1.0}
    seeds = [seed + i for i in range(n)]
    return sim.policy.complete(prompt, seeds=seeds, **{**params, **kwargs})


def walk(sim: Simulator, question: str, seed: int) -> list[str]:
    """Generate a path one step per call, as the search does; the steps written."""
    template = sim.template
    prompt, steps = template.render(question), []
    for _ in range(40):
        choice = complete(sim, prompt, seed=seed)[0]
        steps.append(choice.text)
        if choice.matched_stop != template.step_delimiter:
            assert choice.matched_stop == sim.config.eos_token_id
            return steps
        prompt = template.extend(prompt, choice.text)
    raise AssertionError("the path never ended")


# -- tokenizer and arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["", "Janet sells 16 - 3 - 4 = 9 eggs.", "  a\n\nb  ", "$\\frac{1}{2}$"]
)
def test_tokenizer_truncation_is_a_prefix_of_whole_tokens(text):
    total = count_tokens(text)
    for limit in range(total + 2):
        cut = truncate_tokens(text, limit)
        assert text.startswith(cut)
        assert count_tokens(cut) <= limit
    assert truncate_tokens(text, total) == text
    assert count_tokens("12345") == 5  # digits are single tokens, as in Llama tokenizers


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Natalia sold 48 / 2 = 24 clips in May.", 1),
        ("Natalia sold 48 / 2 = 25 clips in May.", -1),
        ("80,000+50,000=$130,000 and 80,000*1.5=120,000", 1),
        ("Weng earns 12 / 60 = $0.2 per minute, so 0.2 x 50 = $10.", 1),
        ("So 10/3 = 3.33 per person.", 1),
        ("16 - 3 - 4 = 9 but 9 * 2 = 19", -1),
        ("If 2x + 3 = 7 then x = 2.", 0),
        ("Let us think about the problem.", 0),
        ("$3 \\times 4 = 12$", 1),
    ],
)
def test_arithmetic_claims_are_checked_exactly(text, label):
    assert check_claims(text).label == label


# -- generation ----------------------------------------------------------------------------


def test_reference_steps_hide_calculator_notes_and_unbox_answers(sim, problems):
    for problem in problems[:50] + problems[-50:]:
        reference = sim.bank.get(problem.question)
        for step in reference.steps:
            assert "<<" not in step.body and "\n" not in step.body
            assert "\\boxed" not in step.body
    janet = sim.bank.get(problems[0].question)
    assert janet.steps[0].body == "Janet sells 16 - 3 - 4 = 9 duck eggs a day."
    start, end = janet.steps[0].target
    assert janet.steps[0].body[start:end] == "9"  # the result, known from <<16-3-4=9>>


def test_same_seed_same_text_and_indices_differ(sim, gsm8k):
    prompt = sim.template.render(gsm8k[3].question)
    first = complete(sim, prompt, n=8, seed=42, stop=[])
    again = complete(sim, prompt, n=8, seed=42, stop=[])
    other = complete(sim, prompt, n=8, seed=43, stop=[])
    assert first == again
    assert len({c.text for c in first}) > 1
    # Choice i depends only on its own seed: choice 1 of seed 42 is choice 0 of seed 43.
    assert first[1:] == other[:-1]
    assert (
        sim.policy.complete(
            prompt, seeds=[7, 7], max_tokens=512, stop=[], temperature=1.0, top_p=1.0
        )[0]
        == sim.policy.complete(
            prompt, seeds=[7], max_tokens=512, stop=[], temperature=1.0, top_p=1.0
        )[0]
    )
    assert [c.text for c in first] != [c.text for c in other]
    greedy = complete(sim, prompt, n=4, seed=1, temperature=0.0, stop=[])
    assert len({c.text for c in greedy}) == 1
    assert greedy == complete(sim, prompt, n=4, seed=99, temperature=0.0, stop=[])


def test_one_step_per_call_at_the_delimiter_and_eos_at_the_answer(sim, gsm8k):
    question = gsm8k[0].question
    reference = sim.bank.get(question)
    steps = walk(sim, question, seed=5)
    assert len(steps) == len(reference.steps) + 1
    for k, step in enumerate(steps[:-1], start=1):
        assert step.startswith(f"Step {k}: ") and "\n" not in step
    answer = sim.policy.format.answer_of(steps[-1])
    assert answer in (reference.answer, *reference.wrong_answers)


def test_whole_solution_without_the_delimiter_stop(sim, gsm8k):
    prompt = sim.template.render(gsm8k[1].question)
    choice = complete(sim, prompt, stop=["</s>"])[0]
    lines = choice.text.split("\n")
    assert choice.finish_reason == "stop" and choice.matched_stop == sim.config.eos_token_id
    assert lines[0].startswith("Step 1: ")
    assert sim.policy.format.answer_of(lines[-1]) is not None
    assert choice.completion_tokens == count_tokens(choice.text) + 1


def test_max_tokens_truncates_with_finish_reason_length(sim, gsm8k):
    prompt = sim.template.render(gsm8k[2].question)
    choice = complete(sim, prompt, max_tokens=5)[0]
    assert choice.finish_reason == "length" and choice.matched_stop is None
    assert count_tokens(choice.text) == 5 and choice.completion_tokens == 5


def test_a_wrong_step_stays_wrong_and_ends_in_a_wrong_answer(sim, gsm8k):
    problem = gsm8k[2]
    reference = sim.bank.get(problem.question)
    body = reference.steps[0].body
    start, end = reference.steps[0].target
    wrong = body[:start] + "1" + body[start:end] + body[end:]
    prompt = sim.template.extend(sim.template.render(problem.question), f"Step 1: {wrong}")
    answers = set()
    for seed in range(20):
        text = complete(sim, prompt, seed=seed, stop=[])[0].text
        answers.add(sim.policy.format.answer_of(text.split("\n")[-1]))
    assert reference.answer not in answers
    assert answers <= set(reference.wrong_answers)


def test_unknown_questions_get_well_formed_steps(sim):
    prompt = sim.template.render("A farmer has 12 cows and buys 7 more. How many cows now?")
    choice = complete(sim, prompt, stop=[])[0]
    lines = choice.text.split("\n")
    assert len(lines) >= 2 and lines[0].startswith("Step 1: ")
    assert sim.policy.format.answer_of(lines[-1]) is not None
    assert choice.matched_stop == sim.config.eos_token_id


@pytest.mark.parametrize("template_name", ["qwen-math", "gsm8k-fewshot"])
def test_other_templates_write_their_own_step_format(problems, template_name):
    sim = Simulator(SimConfig(role="both", template=template_name, error_rate=0.0), problems)
    template = sim.template
    question = problems[4].question
    prompt = template.render(question)
    texts = []
    for _ in range(20):
        choice = sim.policy.complete(
            prompt,
            seeds=[0],
            max_tokens=512,
            stop=list(template.stop),
            temperature=0.0,
            top_p=1.0,
        )[0]
        texts.append(choice.text)
        assert template.step_delimiter not in choice.text
        if choice.matched_stop != template.step_delimiter:
            break
        prompt = template.extend(prompt, choice.text)
    assert texts[-1] == template.format_answer(problems[4].reference_answer)


def test_a_known_question_is_found_in_a_foreign_prompt_format(sim, gsm8k):
    problem = gsm8k[7]
    prompt = f"Question: {problem.question}\nAnswer:\nStep 1: something else\n"
    text = complete(sim, prompt, stop=[])[0].text
    answer = sim.policy.format.answer_of(text.split("\n")[-1])
    reference = sim.bank.get(problem.question)
    assert answer in (*reference.wrong_answers, reference.answer)
    assert answer != reference.answer  # the foreign first step took it off track


# -- PRM ---------------------------------------------------------------------------------------


def prm_text(question: str, steps: list[str], tag: str = " ки") -> str:
    return question + "\n" + "".join(step + tag + "\n" for step in steps)


def test_prm_labels_follow_the_reference_path(sim, gsm8k):
    problem = gsm8k[0]
    reference = sim.bank.get(problem.question)
    right = [f"Step {k}: {s.body}" for k, s in enumerate(reference.steps, start=1)]
    right.append(sim.template.format_answer(reference.answer))
    path = sim.prm.parse(prm_text(problem.question, right))
    assert path.reference is reference and sim.prm.labels(path) == [1] * len(right)
    derailed = [right[0].replace("= 9", "= 8"), *right[1:]]
    labels = sim.prm.labels(sim.prm.parse(prm_text(problem.question, derailed)))
    assert labels == [-1] * len(right)  # a wrong step and everything after it


def test_prm_reads_a_policy_prompt_as_the_prefix_of_a_tagged_step(sim, gsm8k):
    problem = gsm8k[0]
    steps = [f"Step {k}: {s.body}" for k, s in enumerate(sim.bank.get(problem.question).steps, 1)]
    prefix = sim.template.extend(sim.template.render(problem.question), steps[0])
    tag = sim.template.prm.step_tag
    right = sim.prm.parse(prefix + steps[1] + tag)
    assert right.steps == tuple(steps[:2]) and right.tagged == (1,)
    assert sim.prm.labels(right) == [1, 1]
    wrong = sim.prm.parse(prefix + steps[1].replace("$18", "$20") + tag)
    assert sim.prm.labels(wrong) == [1, -1]


def test_prm_judges_steps_it_did_not_write_by_their_arithmetic(sim):
    question = "Natalia sold clips to 48 friends and then half as many. How many in total?"
    steps = ["Half of 48 is 48 / 2 = 24.", "In total 48 + 24 = 73.", "Let us double check."]
    path = sim.prm.parse(prm_text(question, steps))
    assert path.reference is None
    assert sim.prm.labels(path) == [1, -1, 0]


def test_score_label_order_and_softmax(sim, gsm8k):
    question = gsm8k[0].question
    text = prm_text(question, ["Step 1: Janet sells 16 - 3 - 4 = 9 duck eggs a day."])
    good, bad = sim.good_token_id, sim.bad_token_id
    p_good, p_bad = sim.prm.label_probs(text, [good, bad], good, bad, True)
    assert p_good + p_bad == pytest.approx(1.0) and p_good > p_bad
    assert sim.prm.label_probs(text, [bad, good], good, bad, True) == [p_bad, p_good]
    raw = sim.prm.label_probs(text, [good, bad], good, bad, False)
    assert sum(raw) < 1.0 and raw[0] / raw[1] == pytest.approx(p_good / p_bad)


# -- statistics over 200 GSM8K problems -----------------------------------------------------


def full_answers(sim: Simulator, problems, samples: int) -> list[list[bool]]:
    """Per problem: whether each of `samples` full solutions ends with the right answer."""
    out = []
    for index, problem in enumerate(problems):
        prompt = sim.template.render(problem.question)
        choices = complete(sim, prompt, n=samples, seed=index, stop=[], max_tokens=2048)
        answers = [sim.policy.format.answer_of(c.text.split("\n")[-1]) for c in choices]
        out.append([same_answer(a or "", problem.reference_answer) for a in answers])
    return out


def test_accuracy_falls_as_the_error_rate_rises(gsm8k):
    problems = gsm8k[:200]
    accuracy = []
    for rate in (0.05, 0.15, 0.3):
        sim = Simulator(SimConfig(role="both", error_rate=rate), problems)
        rows = full_answers(sim, problems, samples=4)
        accuracy.append(mean(ok for row in rows for ok in row))
    assert accuracy[0] > accuracy[1] + 0.1 > accuracy[2] + 0.2
    assert 0.4 < accuracy[1] < 0.8  # the default rate: a 7B-class model on GSM8K


def test_majority_vote_over_16_samples_beats_one_sample(gsm8k):
    problems = gsm8k[:200]
    sim = Simulator(SimConfig(role="both"), problems)
    single = voted = 0
    for index, problem in enumerate(problems):
        prompt = sim.template.render(problem.question)
        choices = complete(sim, prompt, n=16, seed=index, stop=[], max_tokens=2048)
        answers = [sim.policy.format.answer_of(c.text.split("\n")[-1]) for c in choices]
        single += same_answer(answers[0], problem.reference_answer)
        voted += same_answer(Counter(answers).most_common(1)[0][0], problem.reference_answer)
    assert voted >= single + 20  # at least 10 points on 200 problems


def prm_margin(problems, signal: float, noise: float) -> float:
    """Mean score of right steps minus mean score of wrong steps; right and wrong come from
    the reference solution, not from the PRM."""
    sim = Simulator(SimConfig(role="both", prm_signal=signal, prm_noise=noise), problems)
    fmt, right, wrong = sim.policy.format, [], []
    for index, problem in enumerate(problems):
        reference = sim.bank.get(problem.question)
        prompt = sim.template.render(problem.question)
        for choice in complete(sim, prompt, n=4, seed=index, stop=[], max_tokens=2048):
            steps = choice.text.split("\n")
            scores = sim.prm.step_scores(prm_text(problem.question, steps))
            on_track = True
            for depth, (step, score) in enumerate(zip(steps, scores, strict=True)):
                answer = fmt.answer_of(step)
                if answer is not None:
                    on_track = on_track and same_answer(answer, reference.answer)
                else:
                    on_track = on_track and fmt.norm(step) == reference.steps[depth].norm
                (right if on_track else wrong).append(score)
    assert len(wrong) > 100 and len(right) > 100
    return mean(right) - mean(wrong)


def test_prm_margin_grows_with_prm_quality(gsm8k):
    problems = gsm8k[:200]
    margins = [prm_margin(problems, signal, 1.0) for signal in (0.5, 2.0, 4.0)]
    assert 0.05 < margins[0] < margins[1] - 0.2 < margins[2] - 0.2
