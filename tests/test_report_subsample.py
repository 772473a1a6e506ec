"""`sample` runs: accuracy at every smaller power-of-two budget by seeded subsampling."""

from __future__ import annotations

import numpy as np
import pytest

from rebase_cli.reports.accuracy import subsample_budgets
from rebase_cli.reports.build import ReportOptions, build_report
from rebase_cli.reports.schema import validate_report
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run
from tests.test_report_builders import add_tree, make_run, node


def _chains(answers: list[str]) -> list:
    """A sample tree: one two-step chain per answer, all with the same scores."""
    return [node(0.5, node(0.5, answer=a)) for a in answers]


def _sample_run(db: Database, seed: int = 7) -> Run:
    run = make_run(db, method="sample", budget=4, seed=seed)
    # Problem 0: only the first of four different answers is right.
    add_tree(db, run, 0, "1", _chains(["1", "2", "3", "4"]))
    # Problem 1: every answer right.
    add_tree(db, run, 1, "5", _chains(["5", "5", "5", "5"]))
    return run


def test_subsample_budgets_are_the_smaller_powers_of_two() -> None:
    assert subsample_budgets(64) == [1, 2, 4, 8, 16, 32]
    assert subsample_budgets(6) == [1, 2, 4]
    assert subsample_budgets(1) == []


def test_sample_run_reports_every_smaller_budget(db: Database) -> None:
    run = _sample_run(db)
    report = build_report(db, [run], ReportOptions(subsample_draws=8))["runs"][0]
    assert report["subsampling"] == {"seed": 7, "draws": 8, "budgets": [1, 2]}
    rows = report["accuracy"]
    assert [(r["budget"], r["subsampled"], r["draws"]) for r in rows] == [
        (1, True, 8),
        (2, True, 8),
        (4, False, 1),
    ]
    # The answers of problem 0 are shuffled by default_rng([seed, draw]) and the first k kept.
    # Problem 0 is right at budget k exactly when its answer 0 is kept: alone at k=1, and at
    # k=2 it also wins the 1-1 tie because it comes first in generation order. Problem 1 is
    # always right.
    kept_first = {1: 0.0, 2: 0.0}
    for draw in range(8):
        rank = np.argsort(np.argsort(np.random.default_rng([7, draw]).random(8)[:4]))
        for k in kept_first:
            kept_first[k] += rank[0] < k
    for row in rows[:2]:
        expected = (kept_first[row["budget"]] / 8 + 1) / 2
        assert row["accuracy"]["majority"] == pytest.approx(expected)
        assert row["accuracy"]["pass_at_n"] == pytest.approx(expected)
    assert rows[2]["accuracy"]["majority"] == 1.0  # all four: "1" wins the 1-1-1-1 tie
    # Compute of k of N independent paths: k/N of the run's.
    full = rows[2]["flops_per_problem"]
    assert [r["flops_per_problem"] for r in rows] == pytest.approx([full / 4, full / 2, full])
    document = build_report(db, [run], ReportOptions(subsample_draws=8))
    validate_report(document)
    assert all(document["runs"][0]["accuracy"][i]["interval"]["majority"] for i in range(3))


def test_subsampling_is_reproducible_and_seeded(db: Database) -> None:
    run = _sample_run(db)
    first = build_report(db, [run])["runs"][0]
    again = build_report(db, [run])["runs"][0]
    assert first["accuracy"] == again["accuracy"]
    assert first["subsampling"]["seed"] == 7
    other = build_report(db, [run], ReportOptions(subsample_seed=123))["runs"][0]
    assert other["subsampling"]["seed"] == 123


def test_rebase_runs_are_not_subsampled(db: Database) -> None:
    run = make_run(db, method="rebase", budget=4)
    add_tree(db, run, 0, "1", _chains(["1", "2"]))
    report = build_report(db, [run])["runs"][0]
    assert report["subsampling"] is None and len(report["accuracy"]) == 1
