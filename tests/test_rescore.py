"""`rebase rescore` on the simulator: a second PRM configuration scores a stored run into a
named score set, `rebase report --scores NAME` selects answers with it, the original scores
stay untouched, and an interrupted rescore continues where it stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rebase_cli.reports.schema import validate_report
from tests.search_helpers import connect, query, rebase, search_args, start_simulator


@pytest.fixture(scope="module")
def simulators():
    # Error-prone steps so problems end with several different answers; the second PRM cannot
    # tell right steps from wrong ones (its scores are noise), the first separates them well.
    with (
        start_simulator(
            "--error-rate", "0.5", "--prm-signal", "3", "--prm-noise", "0.5"
        ) as original,
        start_simulator("--error-rate", "0.5", "--prm-signal", "0", "--prm-noise", "2") as other,
    ):
        yield original, other


def _scores(db: Path) -> list[tuple]:
    return query(db, "SELECT id, score FROM node ORDER BY id")


def _best_last(db: Path, column: str) -> dict[int, str]:
    """Problem → answer of its highest-scoring finished node (first by id on ties)."""
    rows = query(
        db,
        f"SELECT n.problem_id, n.answer, {column} FROM node AS n "
        "JOIN node_score AS s ON s.node_id = n.id "
        "WHERE n.terminal = 1 AND n.answer IS NOT NULL ORDER BY n.problem_id, n.id",
    )
    best: dict[int, tuple[float, str]] = {}
    for problem, answer, score in rows:
        if problem not in best or score > best[problem][0]:
            best[problem] = (score, answer)
    return {problem: answer for problem, (_, answer) in best.items()}


def _chosen(document: dict, rule: str) -> float:
    return document["runs"][0]["accuracy"][-1]["correct"][rule]


def test_rescore_changes_selected_answers_and_keeps_the_original(
    simulators, tmp_path: Path
) -> None:
    original, other = simulators
    db = tmp_path / "rebase.db"
    # `sample`: eight independent solutions per problem, so problems end with several answers.
    args = search_args(original.url, budget=8, limit=12, extra=["--method", "sample"])
    done = rebase(db, *args)
    assert done.returncode == 0, done.stderr
    before = _scores(db)

    scored = rebase(db, "rescore", "run-1", "--reward", other.url, "--name", "inverted", "--json")
    assert scored.returncode == 0, scored.stderr
    summary = json.loads(scored.stdout)
    nodes = query(db, "SELECT count(*) FROM node WHERE depth > 0")[0][0]
    assert (summary["scored"], summary["already_scored"]) == (nodes, 0)
    assert _scores(db) == before  # the search's own scores are untouched
    rows = query(
        db,
        "SELECT n.score, s.score FROM node_score AS s JOIN node AS n ON n.id = s.node_id",
    )
    assert len(rows) == nodes and sum(a != b for a, b in rows) > nodes // 2

    plain = json.loads(rebase(db, "report", "run-1", "-f", "json").stdout)
    report = rebase(db, "report", "run-1", "-f", "json", "--scores", "inverted")
    assert report.returncode == 0, report.stderr
    rescored = json.loads(report.stdout)
    validate_report(rescored)
    section = rescored["runs"][0]["scores"]
    assert section["name"] == "inverted"
    assert "tree's shape" in section["label"] and section["label"] in rescored["runs"][0]["labels"]
    assert plain["runs"][0]["scores"] is None
    # Best-of-N (last) picks, per problem, the answer whose last step scores highest: read
    # straight from SQLite under each set of scores, the picks differ.
    assert _best_last(db, "n.score") != _best_last(db, "s.score")
    score_rules = ("best_of_n_last", "best_of_n_min", "weighted_last", "weighted_min")
    assert any(_chosen(rescored, r) != _chosen(plain, r) for r in score_rules)
    # Majority vote ignores scores; pass@N is over the same answers.
    assert _chosen(rescored, "majority") == _chosen(plain, "majority")
    assert _chosen(rescored, "pass_at_n") == _chosen(plain, "pass_at_n")

    # Interrupted half-way (here: half its scores lost): the report refuses the gap and says
    # how to finish; running rescore again scores only what is missing, to the same values.
    full = query(db, "SELECT node_id, score FROM node_score ORDER BY node_id")
    with connect(db) as connection:
        connection.execute("DELETE FROM node_score WHERE node_id % 2 = 0")
    missing = query(db, "SELECT count(*) FROM node_score")[0][0]
    refused = rebase(db, "report", "run-1", "--scores", "inverted")
    assert refused.returncode == 2
    assert f"scores {missing} of its {nodes} nodes" in refused.stderr
    hint = refused.stderr.split("finish it with: ", 1)[1].split(")")[0].split()
    again = rebase(db, *hint[1:])  # the printed command, exactly
    assert again.returncode == 0, again.stderr
    assert f"{nodes - missing:,} nodes scored now, {missing:,} already scored" in again.stdout
    assert query(db, "SELECT node_id, score FROM node_score ORDER BY node_id") == full


def test_rescore_refuses_another_model_under_the_same_name(simulators, tmp_path: Path) -> None:
    original, _ = simulators
    db = tmp_path / "rebase.db"
    assert rebase(db, *search_args(original.url, budget=2, limit=1)).returncode == 0
    assert rebase(db, "rescore", "1", "--reward", original.url, "--name", "a").returncode == 0
    with connect(db) as connection:
        connection.execute("UPDATE score_set SET reward_model = 'other-prm'")
    refused = rebase(db, "rescore", "1", "--reward", original.url, "--name", "a")
    assert refused.returncode == 1
    assert "holds scores of other-prm" in refused.stderr
    shown = json.loads(rebase(db, "runs", "show", "1", "--json").stdout)
    assert shown["score_sets"] == {"a": {"reward_model": "other-prm", "status": "done"}}
    missing = rebase(db, "report", "1", "--scores", "nope")
    assert missing.returncode == 1 and "run-1 has no score set 'nope'" in missing.stderr
