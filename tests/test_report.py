"""`rebase report` numbers against hand computation on small runs with known trees.

The run below has seven problems (gsm8k grading, so verdicts are plain number comparisons).
Step scores of each finished path and the expected choice of every rule are written next to
each tree; EXPECTED collects them per problem.
"""

from __future__ import annotations

import numpy as np
import pytest

from rebase_cli.domain import TerminalReason
from rebase_cli.reports.accuracy import answer_table, done_mask
from rebase_cli.reports.build import ReportOptions, build_report
from rebase_cli.reports.grading_cache import grade_pairs
from rebase_cli.reports.loading import load_run_data
from rebase_cli.reports.schema import validate_report
from rebase_cli.reports.selection import RULES, select
from rebase_cli.store.database import Database
from rebase_cli.store.grades import count_grades
from rebase_cli.store.models import Run
from tests.test_report_builders import add_tree, make_run, node

# rule order: maj, w-last, w-min, w-prod, w-mean, bo-last, bo-min, bo-prod, bo-mean, pass
EXPECTED = {
    # A1 [.9,.8] "18", A2 [.9,.5] "18", B1 [.6,.95] "20"; C pruned.
    # "18" has 2 votes and the larger weight under every aggregate; best-of-N by last picks B1
    # (.95), by min/prod/mean A1 (.8/.72/.85 against .6/.57/.775).
    0: (1, 1, 1, 1, 1, 0, 1, 1, 1, 1),
    # P1 [.2,.1] "5", P2 [.2,.1] "5.0" (same group), Q1 [.9,.9] "7": "5" wins the vote 2-1,
    # "7" wins every weighted vote and every best-of-N.
    1: (1, 0, 0, 0, 0, 0, 0, 0, 0, 1),
    # X [.5] "4" (ordinal 0) and Y [.5] "3" (ordinal 1) tie everywhere: the first, X, wins.
    2: (0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
    # N1 [.5,.5] "2" at (2, 0) and M [.5] "1" at (1, 1): every tie goes to M, the shallower;
    # prod .25 < .5 also picks M.
    3: (1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
    # only an EOS path without an answer: wrong under every rule.
    4: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
    # 5 failed: not counted.
    # F1 [.9,.2] "10" (first), G1 [.3,.8] "11": tie on votes → F1; last/min/prod prefer G1
    # (.8/.3/.24 against .2/.2/.18); means .55 and .55 tie (0.3+0.8 is 1.1000000000000001
    # in floating point, so this checks the rounding rule) → F1.
    6: (1, 0, 0, 0, 1, 0, 0, 0, 1, 1),
}
TOTALS = dict(zip(RULES, np.array(list(EXPECTED.values())).sum(axis=0).tolist(), strict=True))


def build_known_run(db: Database, **run_options) -> Run:
    run = make_run(db, **run_options)
    tree = [
        node(0.9, node(0.8, answer="18"), node(0.5, answer="18")),
        node(0.6, node(0.95, answer="20")),
        node(0.3, pruned=True),
    ]
    add_tree(db, run, 0, "18", tree, subject="Algebra", level=1)
    tree = [
        node(0.2, node(0.1, answer="5"), node(0.1, answer="5.0")),
        node(0.9, node(0.9, answer="7")),
    ]
    add_tree(db, run, 1, "5", tree, subject="Algebra", level=1)
    add_tree(
        db, run, 2, "3", [node(0.5, answer="4"), node(0.5, answer="3")], subject="Geometry", level=2
    )
    tree = [node(0.5, node(0.5, answer="2")), node(0.5, answer="1")]
    add_tree(db, run, 3, "1", tree, subject="Geometry", level=2)
    tree = [node(0.4, reason=TerminalReason.EOS)]
    add_tree(db, run, 4, "9", tree, subject="Algebra", level=3)
    add_tree(db, run, 5, "2", [node(0.7)], error="reward server returned 500", level=3)
    tree = [node(0.9, node(0.2, answer="10")), node(0.3, node(0.8, answer="11"))]
    add_tree(db, run, 6, "10", tree, subject="Algebra", level=3)
    return run


@pytest.fixture
def known(db: Database) -> Run:
    return build_known_run(db)


def test_every_rule_per_problem_matches_hand_computation(db: Database, known: Run) -> None:
    data = load_run_data(db, known)
    counted = done_mask(data)
    assert counted.tolist() == [True] * 5 + [False, True]
    pairs = [
        (a, data.problems.reference[p])
        for a, p in zip(data.answers.answer, data.answers.problem, strict=True)
    ]
    verdicts, _ = grade_pairs(db, known.dataset, pairs)
    chosen = select(answer_table(data, verdicts, counted), int(counted.sum()))
    for position, index in enumerate(EXPECTED):
        got = tuple(int(chosen[rule][position]) for rule in RULES)
        assert got == EXPECTED[index], f"problem {index}"


def test_report_accuracy_row(db: Database, known: Run) -> None:
    (row,) = build_report(db, [known])["runs"][0]["accuracy"]
    assert row["budget"] == 4 and row["problems"] == 6 and not row["subsampled"]
    assert row["correct"] == TOTALS
    assert TOTALS == {
        "majority": 4,
        "weighted_last": 2,
        "weighted_min": 2,
        "weighted_prod": 2,
        "weighted_mean": 3,
        "best_of_n_last": 1,
        "best_of_n_min": 2,
        "best_of_n_prod": 2,
        "best_of_n_mean": 3,
        "pass_at_n": 5,
    }
    assert row["accuracy"] == {rule: count / 6 for rule, count in TOTALS.items()}


def test_path_scores_aggregate_steps_below_the_root(db: Database, known: Run) -> None:
    answers = load_run_data(db, known).answers
    first = {a: i for i, a in reversed(list(enumerate(answers.answer)))}
    a1, b1 = first["18"], first["20"]
    assert answers.scores["last"][a1] == pytest.approx(0.8)
    assert answers.scores["min"][a1] == pytest.approx(0.8)
    assert answers.scores["prod"][a1] == pytest.approx(0.72)
    assert answers.scores["mean"][a1] == pytest.approx(0.85)
    assert [answers.scores[k][b1] for k in ("last", "min", "prod", "mean")] == pytest.approx(
        [0.95, 0.6, 0.57, 0.775]
    )
    m = first["1"]  # a depth-1 answer: its path is its own step
    assert [answers.scores[k][m] for k in ("last", "min", "prod", "mean")] == [0.5] * 4


def test_compute_tokens_nodes_and_flops(db: Database, known: Run) -> None:
    compute = build_report(db, [known])["runs"][0]["compute"]
    # 7 problems commit level 1 (100, 40, 20; 1, 1; 0) and 4 of them level 2 (200, 60, 30; 2, 2; 1)
    assert compute["policy_prompt_tokens"] == 7 * 100 + 4 * 200 == 1500
    assert compute["policy_completion_tokens"] == 7 * 40 + 4 * 60 == 520
    assert compute["reward_tokens"] == 7 * 20 + 4 * 30 == 260
    assert (compute["policy_requests"], compute["reward_requests"], compute["retries"]) == (
        15,
        15,
        4,
    )
    assert compute["wall_seconds"] == 12.5 and compute["problem_seconds"] == 7.0
    assert compute["problems_started"] == 7
    assert compute["nodes"] == 13 + 9 and compute["nodes_per_problem"] == pytest.approx(22 / 7)
    assert compute["finished_answers"] == 12
    assert compute["answers_per_problem"] == pytest.approx(12 / 7)
    flops = compute["flops"]
    assert flops["policy"]["params"] == 7.62e9
    assert flops["policy"]["params_source"] == "known-models table (Qwen2.5-Math-7B)"
    assert flops["policy"]["flops"] == pytest.approx(2 * 7.62e9 * 2020)
    assert flops["reward"]["params_source"] == "known-models table (Math-Shepherd-Mistral-7B)"
    assert flops["reward"]["flops"] == pytest.approx(2 * 7.24e9 * 260)
    total = 2 * 7.62e9 * 2020 + 2 * 7.24e9 * 260
    assert flops["total"] == pytest.approx(total)
    assert flops["per_problem"] == pytest.approx(total / 7)


@pytest.mark.parametrize(
    ("run_options", "options", "policy_source", "policy_params"),
    [
        ({}, ReportOptions(policy_params=1e9), "flag", 1e9),
        ({"config": {"policy_params": 3e9}}, ReportOptions(), "config", 3e9),
        ({"config": {"policy_params": 3e9}}, ReportOptions(policy_params=2e9), "flag", 2e9),
        (
            {"policy_model": "sim-policy-gsm8k"},
            ReportOptions(),
            "simulator model, assumed 7e9",
            7e9,
        ),
        (
            {"policy_model": "EleutherAI/llemma_34b"},
            ReportOptions(),
            "known-models table (Llemma-34B)",
            33.7e9,
        ),
        ({"policy_model": "my/own-model"}, ReportOptions(), "unknown", None),
    ],
)
def test_parameter_sources(db, run_options, options, policy_source, policy_params) -> None:
    run = make_run(db, **run_options)
    add_tree(db, run, 0, "1", [node(0.5, answer="1")])
    report = build_report(db, [run], options)["runs"][0]
    policy = report["compute"]["flops"]["policy"]
    assert (policy["params_source"], policy["params"]) == (policy_source, policy_params)
    if policy_params is None:
        assert policy["flops"] is None and report["compute"]["flops"]["total"] is None
        assert report["accuracy"][0]["flops_per_problem"] is None
    else:
        assert policy["flops"] == pytest.approx(2 * policy_params * 140)


def test_per_depth_allocation_view(db: Database, known: Run) -> None:
    rows = build_report(db, [known])["runs"][0]["allocation"]
    keys = (
        "depth",
        "problems",
        "nodes",
        "terminal",
        "answers",
        "open",
        "expanded",
        "pruned",
        "children",
    )
    assert [tuple(r[k] for k in keys) for r in rows] == [
        # 7 roots, each expanded: 3+2+2+2+1+1+2 children
        (0, 7, 7, 0, 0, 7, 7, 0, 13),
        # X, Y, M answer and Z ends by EOS; A(2) B(1) C(0) P(2) Q(1) N(1) F(1) G(1) decided;
        # K (failed problem) never got a decision
        (1, 7, 13, 4, 3, 8, 7, 1, 9),
        (2, 4, 9, 9, 9, 0, 0, 0, 0),
    ]


def test_breakdown_by_subject_and_level(db: Database, known: Run) -> None:
    breakdown = build_report(db, [known])["runs"][0]["breakdown"]
    subjects = {r["key"]: (r["problems"], r["accuracy"]["majority"]) for r in breakdown["subject"]}
    # Algebra: problems 0, 1, 4, 6 (majority right on 0, 1, 6); Geometry: 2, 3 (right on 3).
    # Problem 5 failed and has no subject, so it appears nowhere.
    assert subjects == {"Algebra": (4, 0.75), "Geometry": (2, 0.5)}
    levels = [(r["key"], r["problems"], r["accuracy"]["weighted_mean"]) for r in breakdown["level"]]
    assert levels == [("1", 2, 0.5), ("2", 2, 0.5), ("3", 2, 0.5)]


def test_no_breakdown_without_subjects(db: Database) -> None:
    run = make_run(db)
    add_tree(db, run, 0, "1", [node(0.5, answer="1")])
    assert build_report(db, [run])["runs"][0]["breakdown"] == {"subject": [], "level": []}


def test_failed_problems_are_listed_and_make_the_run_partial(db: Database, known: Run) -> None:
    report = build_report(db, [known])["runs"][0]
    assert report["failed"] == [{"index": 5, "error": "reward server returned 500"}]
    assert report["problems"] == {"total": 7, "done": 6, "failed": 1, "unfinished": 0}
    assert report["run"]["partial"] is True
    assert any(label.startswith("PARTIAL") for label in report["labels"])


def test_interrupted_run_is_partial_and_counts_only_done_problems(db: Database) -> None:
    run = make_run(db, status="interrupted")
    add_tree(db, run, 0, "1", [node(0.5, answer="1")])
    add_tree(db, run, 1, "2", [node(0.5, node(0.5, answer="2"))], finish=False)
    report = build_report(db, [run])["runs"][0]
    assert report["problems"] == {"total": 2, "done": 1, "failed": 0, "unfinished": 1}
    assert report["accuracy"][0]["problems"] == 1
    assert report["accuracy"][0]["accuracy"]["majority"] == 1.0
    assert report["labels"] == [
        "PARTIAL — run is interrupted: accuracy over 1 of 2 problems (0 failed, 1 unfinished)"
    ]


def test_finished_run_without_failures_has_no_labels(db: Database) -> None:
    run = make_run(db)
    add_tree(db, run, 0, "1", [node(0.5, answer="1")])
    report = build_report(db, [run])["runs"][0]
    assert report["labels"] == [] and report["run"]["partial"] is False


def test_simulated_run_is_labelled(db: Database) -> None:
    run = make_run(db, simulated=True, policy_model="sim-policy", reward_model="sim-prm")
    add_tree(db, run, 0, "1", [node(0.5, answer="1")])
    report = build_report(db, [run])["runs"][0]
    assert report["labels"] == ["SIMULATED — synthetic accuracy"]
    assert report["run"]["simulated"] is True


def test_grades_are_cached_by_grader_version(db: Database, known: Run) -> None:
    first = build_report(db, [known])["runs"][0]["grading"]
    # 11 distinct (answer, reference) pairs among the done problems: 2 + 3 ("5" and "5.0" are
    # two) + 2 + 2 + 2.
    assert (first["pairs"], first["cached"], first["graded"]) == (11, 0, 11)
    assert count_grades(db, first["grader_version"]) == 11
    second = build_report(db, [known])["runs"][0]
    assert (second["grading"]["cached"], second["grading"]["graded"]) == (11, 0)
    assert second["accuracy"][0]["correct"] == TOTALS


def test_report_of_several_runs_keeps_their_order(db: Database, known: Run) -> None:
    other = make_run(db, name="second", method="beam")
    add_tree(db, other, 0, "1", [node(0.5, answer="1")])
    document = build_report(db, [other, known])
    assert [r["run"]["ref"] for r in document["runs"]] == [f"run-{other.id}", f"run-{known.id}"]
    validate_report(document)


def test_json_document_validates_against_the_schema(db: Database, known: Run) -> None:
    validate_report(build_report(db, [known]))


def test_schema_rejects_a_document_missing_a_rule(db: Database, known: Run) -> None:
    import jsonschema

    document = build_report(db, [known])
    del document["runs"][0]["accuracy"][0]["accuracy"]["pass_at_n"]
    with pytest.raises(jsonschema.ValidationError):
        validate_report(document)


def test_empty_run_reports_no_accuracy(db: Database) -> None:
    run = make_run(db, status="running")
    document = build_report(db, [run])
    row = document["runs"][0]["accuracy"][0]
    assert row["problems"] == 0 and row["accuracy"]["majority"] is None
    assert document["runs"][0]["allocation"] == []
    validate_report(document)


def test_answers_the_grader_calls_one_number_vote_together(db: Database) -> None:
    """Three single votes by text, but "0.5" and "\\frac{1}{2}" are one number: that group wins
    the majority (a vote by raw text would tie and pick the first answer, "0.3")."""
    run = make_run(db, dataset="math500", budget=3)
    add_tree(
        db, run, 0, "\\frac{1}{2}",
        [node(0.9, answer="0.3"), node(0.1, answer="0.5"), node(0.1, answer="\\frac{1}{2}")],
    )  # fmt: skip
    data = load_run_data(db, run)
    counted = done_mask(data)
    pairs = [(a, "\\frac{1}{2}") for a in data.answers.answer]
    verdicts, _ = grade_pairs(db, run.dataset, pairs)
    table = answer_table(data, verdicts, counted)
    assert len(set(table.group.tolist())) == 2
    chosen = select(table, 1)
    assert chosen["majority"].tolist() == [True]
    assert chosen["best_of_n_last"].tolist() == [False]
