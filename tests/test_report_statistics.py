"""Bootstrap intervals and the paired comparison, checked against values computed here
independently: a brute-force enumeration for the exact McNemar p-value, a plain-Python
bootstrap (its own random generator) and the normal approximation for the intervals."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from rebase_cli.reports.build import ReportOptions, build_report
from rebase_cli.reports.schema import validate_report
from rebase_cli.reports.selection import RULES
from rebase_cli.reports.statistics import StatsOptions, mcnemar_exact_p, resample_weights
from rebase_cli.store.database import Database
from tests.test_report_builders import add_tree, make_run, node

# 50 problems; (run A right, run B right) for each, by count.
PATTERN = {(True, False): 2, (False, True): 10, (True, True): 25, (False, False): 13}


def _outcomes() -> list[tuple[bool, bool]]:
    # Interleaved so that flips are spread over the dataset, not in one block.
    rows = [pair for pair, count in PATTERN.items() for _ in range(count)]
    random.Random(3).shuffle(rows)
    return rows


def _paired_runs(db: Database):
    outcomes = _outcomes()
    runs = []
    for side in (0, 1):
        run = make_run(db, budget=2, name=f"run-{'ab'[side]}")
        for index, pair in enumerate(outcomes):
            # One finished answer per problem: every selection rule picks it.
            add_tree(db, run, index, "7", [node(0.9, answer="7" if pair[side] else "8")])
        runs.append(run)
    return runs, outcomes


def _brute_force_two_sided_p(b: int, c: int) -> float:
    """P(|#B-only − #A-only| ≥ observed) over all 2^(b+c) equally likely sign patterns."""
    n = b + c
    observed = abs(b - c)
    extreme = sum(
        1 for signs in itertools.product((1, -1), repeat=n) if abs(sum(signs)) >= observed
    )
    return extreme / 2**n


def _python_bootstrap(values: list[float], resamples: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def test_exact_mcnemar_matches_brute_force_enumeration() -> None:
    for b, c in [(10, 2), (2, 10), (5, 5), (0, 7), (1, 0), (12, 3)]:
        assert mcnemar_exact_p(b, c) == pytest.approx(_brute_force_two_sided_p(b, c)), (b, c)
    assert mcnemar_exact_p(0, 0) == 1.0


def test_paired_comparison_of_two_hand_built_runs(db: Database) -> None:
    (run_a, run_b), outcomes = _paired_runs(db)
    document = build_report(db, [run_a, run_b])
    validate_report(document)
    comparison = document["comparison"]
    assert (comparison["a"], comparison["b"]) == (f"run-{run_a.id}", f"run-{run_b.id}")
    assert comparison["problems"] == comparison["a_problems"] == comparison["b_problems"] == 50
    gained = [i for i, (a, b) in enumerate(outcomes) if b and not a]
    lost = [i for i, (a, b) in enumerate(outcomes) if a and not b]
    assert len(gained) == 10 and len(lost) == 2
    diffs = [float(b) - float(a) for a, b in outcomes]
    mean = sum(diffs) / 50
    # Normal approximation of the paired difference's interval.
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 50)
    half = 1.959964 * sd / math.sqrt(50)
    python_low, python_high = _python_bootstrap(diffs, 4000, seed=11)
    assert [entry["rule"] for entry in comparison["rules"]] == list(RULES)
    for entry in comparison["rules"]:
        assert entry["accuracy_a"] == pytest.approx(27 / 50)
        assert entry["accuracy_b"] == pytest.approx(35 / 50)
        assert entry["difference"] == pytest.approx(0.16)
        assert (entry["b_only"], entry["a_only"]) == (10, 2)
        assert entry["gained"] == gained and entry["lost"] == lost
        assert entry["p_value"] == pytest.approx(_brute_force_two_sided_p(10, 2))
        assert entry["p_value"] == pytest.approx(2 * 79 / 4096)
        low, high = entry["interval"]
        assert low == pytest.approx(mean - half, abs=0.03)
        assert high == pytest.approx(mean + half, abs=0.03)
        assert low == pytest.approx(python_low, abs=0.03)
        assert high == pytest.approx(python_high, abs=0.03)


def test_every_accuracy_has_a_seeded_interval(db: Database) -> None:
    (run_a, _), outcomes = _paired_runs(db)
    document = build_report(db, [run_a])
    assert document["comparison"] is None
    assert document["statistics"]["seed"] == 0 and document["statistics"]["resamples"] == 2000
    (row,) = document["runs"][0]["accuracy"]
    p = 27 / 50
    half = 1.959964 * math.sqrt(p * (1 - p) / 50)
    low, high = _python_bootstrap([float(a) for a, _ in outcomes], 4000, seed=5)
    for rule in RULES:
        assert row["interval"][rule][0] == pytest.approx(p - half, abs=0.03)
        assert row["interval"][rule][1] == pytest.approx(p + half, abs=0.03)
        assert row["interval"][rule] == pytest.approx([low, high], abs=0.03)
    again = build_report(db, [run_a])["runs"][0]["accuracy"][0]["interval"]
    assert again == row["interval"]
    other = build_report(db, [run_a], ReportOptions(stats=StatsOptions(seed=9)))
    assert other["statistics"]["seed"] == 9
    # Percentiles of 50 0/1 values are coarse and often agree across seeds; the draws do not.
    assert (
        resample_weights(50, StatsOptions(seed=9)) != resample_weights(50, StatsOptions())
    ).any()
    assert (resample_weights(50, StatsOptions()) == resample_weights(50, StatsOptions())).all()


def test_runs_over_different_datasets_are_not_paired(db: Database) -> None:
    first = make_run(db, dataset="gsm8k")
    add_tree(db, first, 0, "1", [node(0.5, answer="1")])
    second = make_run(db, dataset="math500")
    add_tree(db, second, 0, "1", [node(0.5, answer="1")])
    assert build_report(db, [first, second])["comparison"] is None


def test_only_shared_done_problems_are_paired(db: Database) -> None:
    first = make_run(db)
    second = make_run(db)
    for index in range(4):
        add_tree(db, first, index, "1", [node(0.5, answer="1")])
    for index in (2, 3, 4):
        add_tree(db, second, index, "1", [node(0.5, answer="2" if index == 3 else "1")])
    comparison = build_report(db, [first, second])["comparison"]
    assert (comparison["problems"], comparison["a_problems"], comparison["b_problems"]) == (2, 4, 3)
    majority = comparison["rules"][0]
    assert (majority["lost"], majority["gained"], majority["difference"]) == ([3], [], -0.5)
