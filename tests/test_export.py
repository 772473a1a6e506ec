"""`rebase export RUN --format jsonl|reference`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.store.database import Database
from tests.test_report_builders import add_tree, make_run, node

# The reference evaluation script's answer pattern for Math-Shepherd-style outputs.
SHEPHERD_RE = re.compile(r"The answer is:(.+) ки")


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "e.db"
    db = Database.open(path)
    run = make_run(db, config={"template": "llemma-metamath"})
    tree = [
        node(
            0.9,
            node(0.8, answer="18", text="The answer is: 18"),
            node(0.5, answer="17", text="The answer is: 17"),
            text="Step 1: 16 - 3 - 4 = 9",
        ),
        node(0.2, pruned=True),
    ]
    add_tree(db, run, 0, "18", tree, question="Janet's ducks?")
    add_tree(db, run, 1, "3", [node(0.4, answer="3", text="The answer is: 3")], question="Q1?")
    add_tree(db, run, 2, "5", [node(0.7)], error="policy server timed out", question="Q2?")
    db.close()
    return path


def invoke(db_file: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(db_file), "export", *args])


def test_jsonl_has_one_record_per_problem_with_paths(db_file: Path) -> None:
    result = invoke(db_file, "run-1", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    first = records[0]
    assert (first["question"], first["reference"], first["status"]) == (
        "Janet's ducks?",
        "18",
        "done",
    )
    assert (first["policy_prompt_tokens"], first["policy_completion_tokens"]) == (300, 100)
    assert [
        (a["depth"], a["ordinal"], a["answer"], a["correct"], a["step_scores"])
        for a in first["answers"]
    ] == [(2, 0, "18", True, [0.9, 0.8]), (2, 1, "17", False, [0.9, 0.5])]
    assert first["answers"][0]["text"] == "Step 1: 16 - 3 - 4 = 9\nThe answer is: 18"
    assert first["answers"][0]["terminal_reason"] == "answer"
    assert records[1]["answers"][0]["step_scores"] == [0.4]
    assert records[2]["answers"] == [] and records[2]["error"] == "policy server timed out"


def test_reference_shape_is_readable_by_the_paper_script(db_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "answers.json"
    result = invoke(db_file, "latest", "--format", "reference", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 3 problems" in result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert isinstance(data, list) and len(data) == 3
    assert set(data[0]) == {"question", "model_answer", "ground_truth_answer", "total_tokens"}
    assert data[0]["ground_truth_answer"] == "18" and data[0]["total_tokens"] == 100
    texts = [a["text"] for a in data[0]["model_answer"]]
    assert texts[0] == "Step 1: 16 - 3 - 4 = 9 ки\nThe answer is: 18 ки\n"
    assert [SHEPHERD_RE.search(t).group(1).strip() for t in texts] == ["18", "17"]
    assert [a["step_scores"] for a in data[0]["model_answer"]] == [[0.9, 0.8], [0.9, 0.5]]
    assert data[2]["model_answer"] == []


def test_empty_run_exports_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = Database.open(path)
    make_run(db)
    db.close()
    result = invoke(path, "run-1", "--format", "reference")
    assert result.exit_code == 0 and json.loads(result.stdout) == []


def test_format_is_required_and_checked(db_file: Path) -> None:
    assert invoke(db_file, "run-1").exit_code == 2
    assert invoke(db_file, "run-1", "--format", "csv").exit_code == 2


def test_unwritable_output_is_one_line(db_file: Path, tmp_path: Path) -> None:
    result = invoke(db_file, "run-1", "-f", "jsonl", "-o", str(tmp_path / "missing" / "x.jsonl"))
    assert result.exit_code == 2 and "cannot write" in result.stderr
