"""`rebase grade FILE.jsonl`: accuracy, JSON verdicts, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.datasets import load_dataset


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def gsm8k_outputs(tmp_path: Path) -> Path:
    problems = load_dataset("gsm8k").problems
    return write_jsonl(
        tmp_path / "outputs.jsonl",
        [
            {"idx": 0, "output": f"Step 1: ...\nThe answer is: {problems[0].reference_answer}"},
            {"idx": 1, "output": f"...\n#### {problems[1].reference_answer}"},
            {"question": problems[2].question, "output": "The answer is: 999999"},
            {"idx": 3, "output": "I could not finish."},
        ],
    )


def test_prints_the_accuracy(gsm8k_outputs: Path) -> None:
    result = CliRunner().invoke(app, ["grade", str(gsm8k_outputs), "--dataset", "gsm8k"])
    assert result.exit_code == 0, result.output
    assert "accuracy 50.0% (2 / 4)" in result.stdout
    assert "no answer" in result.stdout and "not equal" in result.stdout


def test_json_prints_one_verdict_per_line(gsm8k_outputs: Path) -> None:
    result = CliRunner().invoke(app, ["grade", str(gsm8k_outputs), "--dataset", "gsm8k", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    problems = load_dataset("gsm8k").problems
    assert [row["correct"] for row in rows] == [True, True, False, False]
    assert rows[0] == {
        "line": 1,
        "idx": 0,
        "answer": problems[0].reference_answer,
        "reference": problems[0].reference_answer,
        "correct": True,
        "reason": None,
    }
    assert rows[2]["question"] == problems[2].question
    assert rows[2]["answer"] == "999999" and rows[2]["reason"] == "not equal"
    assert rows[3]["answer"] is None and rows[3]["reason"] == "no answer"


def test_lines_may_carry_their_own_reference(tmp_path: Path) -> None:
    outputs = write_jsonl(
        tmp_path / "own.jsonl",
        [
            {"output": "so \\boxed{\\dfrac{1}{2}}", "reference": "0.5"},
            {"output": "The answer is: 2\\sqrt{5}", "reference": "\\sqrt{20}"},
            {"output": "The answer is: 41", "reference": 42},
        ],
    )
    result = CliRunner().invoke(app, ["grade", str(outputs), "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["correct"] for line in result.stdout.splitlines()] == [
        True,
        True,
        False,
    ]


def test_math500_by_question_with_a_template_regex(tmp_path: Path) -> None:
    problem = load_dataset("math500").problems[0]
    outputs = write_jsonl(
        tmp_path / "math.jsonl",
        [{"question": problem.question, "output": f"ANSWER<<{problem.reference_answer}>>"}],
    )
    args = ["grade", str(outputs), "--dataset", "math500", "--json"]
    assert json.loads(CliRunner().invoke(app, args).stdout)["correct"] is False
    result = CliRunner().invoke(app, [*args, "--answer-regex", "ANSWER<<(.+)>>"])
    assert json.loads(result.stdout)["correct"] is True


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"idx": 0, "output": "4"}', "{not json"], "bad.jsonl:2: not valid JSON"),
        (['["a list"]'], "bad.jsonl:1: expected a JSON object, got list"),
        (['{"idx": 0}'], "bad.jsonl:1: no field 'output'"),
        (['{"idx": 0, "output": 5}'], "bad.jsonl:1: 'output' must be a string"),
        (['{"output": "5"}'], "bad.jsonl:1: no 'reference', 'idx' or 'question'"),
        (['{"idx": "3", "output": "5"}'], "bad.jsonl:1: 'idx' must be an integer"),
        (['{"idx": 0, "output": "5"}', '{"idx": 5000, "output": "5"}'], "bad.jsonl:2: idx 5000"),
        (['{"question": "What is 1+1?", "output": "2"}'], "bad.jsonl:1: question not found"),
    ],
)
def test_a_malformed_line_is_a_one_line_error(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["grade", str(bad), "--dataset", "gsm8k"])
    assert result.exit_code == 1
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_dataset_references_need_a_dataset(tmp_path: Path) -> None:
    outputs = write_jsonl(tmp_path / "o.jsonl", [{"idx": 0, "output": "5"}])
    result = CliRunner().invoke(app, ["grade", str(outputs)])
    assert result.exit_code == 2
    assert "pass --dataset" in " ".join(result.stderr.split())


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["grade", str(tmp_path / "nope.jsonl"), "--dataset", "gsm8k"])
    assert result.exit_code == 1
    assert "no such file" in result.stderr
