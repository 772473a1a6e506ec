"""The paper's compute axis: policy generated tokens, counted independently from the stored
nodes, reported next to FLOPs and usable as the plot's x axis."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rebase_cli.reports.compute import PAPER_COMPUTE_FORMULA
from rebase_cli.reports.plot import plot_points
from rebase_cli.reports.schema import validate_report
from tests.search_helpers import rebase


@pytest.fixture(scope="module")
def run_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("paper") / "paper.db"
    result = rebase(db, "search", "--dataset", "gsm8k", "--budget", "8", "--limit", "4",
                    "--policy", "sim", "--reward", "sim")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return db


def test_paper_compute_is_the_policys_generated_tokens(run_db: Path) -> None:
    result = rebase(run_db, "report", "latest", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    validate_report(document)
    report = document["runs"][0]
    with sqlite3.connect(run_db) as connection:
        (generated,) = connection.execute("SELECT sum(completion_tokens) FROM node").fetchone()
    paper = report["compute"]["paper"]
    assert paper["formula"] == PAPER_COMPUTE_FORMULA
    assert paper["tokens"] == generated > 0
    assert paper["per_problem"] == pytest.approx(generated / 4)
    assert report["accuracy"][-1]["paper_compute_per_problem"] == pytest.approx(generated / 4)
    # ours counts prompt and PRM tokens too
    assert report["compute"]["policy_prompt_tokens"] + report["compute"]["reward_tokens"] > 0
    on_paper = json.loads(
        rebase(run_db, "report", "latest", "--format", "json", "--compute-axis", "paper").stdout
    )
    assert on_paper["curves"]["x"] == "paper"
    xs = [x for points in plot_points(on_paper).values() for x, _ in points]
    assert xs and all(x == pytest.approx(generated / 4) for x in xs)


def test_plot_on_the_paper_axis(run_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "paper.svg"
    result = rebase(run_db, "report", "latest", "--plot", str(out), "--compute-axis", "paper")
    assert result.returncode == 0, result.stderr
    assert "policy generated tokens per problem" in out.read_text()
    bad = rebase(run_db, "report", "latest", "--compute-axis", "watts")
    assert bad.returncode == 2 and "--compute-axis" in bad.stderr and "'watts'" in bad.stderr
