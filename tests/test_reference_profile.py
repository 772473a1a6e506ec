"""`--profile reference` builds the authors' tree: their allocation rule, replayed here from its
description over the scores a simulator run stored, gives every stored child count and order.

The authors' rule (thu-wyz/rebase, rebase.py), written independently of rebase's strategy code:
at each depth, in creation order, a node whose path has ended ("The answer is" in its text) or
whose own step used >= max_tokens tokens takes one unit off the remaining width; the others are
candidates. Candidates are sorted ascending by score with a stable sort and then reversed
(equal scores: the later-created node first); walking them, a node gets
ceil(W * e^(s/T) / sum of the remaining e^(s/T)) children, and W and the sum drop by what it
got. Children are created parent by parent in that order. The search stops when the width is
used up, no candidate is left, or at depth 25. (The authors sum in float32; here the walk is
exact, as in rebase.)
"""

from __future__ import annotations

import json
import math
import random
import sqlite3
from fractions import Fraction
from pathlib import Path

import pytest

from tests.search_helpers import (
    diff_runs,
    dump_run,
    kill_and_resume,
    rebase,
    run_ids,
    search_args,
    start_simulator,
)

FIXTURE = Path(__file__).parent / "fixtures" / "authors_rebase.yaml"
WIDTH, T, MAX_TOKENS, MAX_DEPTH = 16, 0.2, 1024, 25


def authors_allocation(candidates: list[dict], width: int) -> list[tuple[dict, int]]:
    ranked = sorted(candidates, key=lambda node: node["score"])  # stable, ascending
    ranked.reverse()
    top = max(node["score"] for node in ranked)
    weights = [Fraction(math.exp((node["score"] - top) / T)) for node in ranked]
    left, remaining_sum, out = width, sum(weights), []
    for node, weight in zip(ranked, weights, strict=True):
        count = math.ceil(left * weight / remaining_sum)
        out.append((node, count))
        left -= count
        remaining_sum -= weight
    return out


def load_problems(db: Path) -> dict[int, list[dict]]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        rows = connection.execute(
            "SELECT n.id, n.parent_id, n.depth, n.ordinal, n.score, n.text, "
            "n.completion_tokens, n.terminal, pr.dataset_index, pr.status "
            "FROM node n JOIN problem pr ON n.problem_id = pr.id ORDER BY n.depth, n.ordinal"
        ).fetchall()
        allocations = connection.execute("SELECT node_id, children FROM allocation").fetchall()
    finally:
        connection.close()
    given = {row["node_id"]: row["children"] for row in allocations}
    problems: dict[int, list[dict]] = {}
    for row in rows:
        assert row["status"] == "done"
        node = dict(row)
        node["allocated"] = given.get(row["id"])
        problems.setdefault(row["dataset_index"], []).append(node)
    return problems


def replay(nodes: list[dict]) -> int:
    """Checks one problem's stored tree against the authors' rule; returns the tie groups met
    (equal-score candidates that got different child counts), so the test knows ties mattered."""
    levels: dict[int, list[dict]] = {}
    for node in nodes:  # already in (depth, ordinal) = creation order
        levels.setdefault(node["depth"], []).append(node)
    remaining, depth, ties = WIDTH, 0, 0
    while True:
        candidates = []
        for node in levels.get(depth, []):
            leaf = node["depth"] > 0 and "The answer is" in node["text"]
            if leaf or node["completion_tokens"] >= MAX_TOKENS:
                remaining -= 1
            else:
                candidates.append(node)
        if remaining <= 0 or not candidates:
            assert depth + 1 not in levels, f"the authors stop at depth {depth}"
            return ties
        plan = authors_allocation(candidates, remaining)
        expected_parents = [node["id"] for node, count in plan for _ in range(count)]
        children = levels.get(depth + 1, [])
        assert [child["parent_id"] for child in children] == expected_parents, (
            f"depth {depth + 1}: children by parent differ from the authors' order"
        )
        for node, count in plan:
            assert node["allocated"] == count, f"node {node['id']} at depth {depth}"
        scores: dict[float, set[int]] = {}
        for node, count in plan:
            scores.setdefault(node["score"], set()).add(count)
        ties += sum(1 for counts in scores.values() if len(counts) > 1)
        depth += 1
        if depth >= MAX_DEPTH:
            assert depth + 1 not in levels
            return ties


@pytest.fixture(scope="module")
def reference_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("reference") / "reference.db"
    result = rebase(
        db, "search", "--config", str(FIXTURE), "--profile", "reference", "--policy", "sim",
        "--reward", "sim", "--dataset", "gsm8k", "--limit", "12", "--seed", "3", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["done"] == 12
    return db


def test_reference_tree_is_the_authors_allocation_level_by_level(reference_db: Path) -> None:
    problems = load_problems(reference_db)
    assert len(problems) == 12
    ties = sum(replay(nodes) for nodes in problems.values())
    # The simulated PRM gives equal steps equal scores, so tie order decided real counts.
    assert ties > 0


def test_reference_steps_carry_the_policys_own_tags_once(reference_db: Path) -> None:
    with sqlite3.connect(reference_db) as connection:
        rows = connection.execute("SELECT depth, text FROM node WHERE depth > 0").fetchall()
    for depth, text in rows:
        assert text.startswith(f"Step {depth}: "), text
        assert text.count("Step ") == 1, text  # generation stopped at "Step {depth + 1}"


def test_reference_paths_end_only_on_the_answer_phrase(reference_db: Path) -> None:
    with sqlite3.connect(reference_db) as connection:
        rows = connection.execute(
            "SELECT text, terminal, terminal_reason FROM node WHERE depth > 0"
        ).fetchall()
    for text, terminal, reason in rows:
        assert bool(terminal) == ("The answer is" in text), text
        assert reason in (None, "answer")


def test_default_profile_is_not_the_authors_order(tmp_path: Path) -> None:
    """The replay tells the profiles apart: the default's tree breaks ties and orders children
    differently, so the same check fails on it (the check is not vacuous)."""
    db = tmp_path / "default.db"
    result = rebase(
        db, "search", "--config", str(FIXTURE), "--template", "authors-llemma",
        "--leaf-rule", "answer-phrase", "--path-token-rule", "step", "--policy", "sim",
        "--reward", "sim", "--dataset", "gsm8k", "--limit", "6", "--seed", "3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    failures = 0
    for nodes in load_problems(db).values():
        try:
            replay(nodes)
        except AssertionError:
            failures += 1
    assert failures > 0


def test_path_token_rule_counts_the_step_or_the_whole_path(tmp_path: Path) -> None:
    """With max_tokens 60 and ~20-token steps, the path rule ends paths for length; the
    authors' rule (a node counts only its own step) never does."""
    common = ["search", "--config", str(FIXTURE), "--policy", "sim", "--reward", "sim",
              "--dataset", "gsm8k", "--limit", "4", "--max-tokens", "60",
              "--max-step-tokens", "60"]  # fmt: skip
    reasons = {}
    for rule in ("path", "step"):
        db = tmp_path / f"{rule}.db"
        result = rebase(db, *common, "--profile", "reference", "--path-token-rule", rule)
        assert result.returncode == 0, result.stderr
        with sqlite3.connect(db) as connection:
            reasons[rule] = dict(
                connection.execute(
                    "SELECT terminal_reason, count(*) FROM node WHERE terminal "
                    "GROUP BY terminal_reason"
                ).fetchall()
            )
    assert reasons["path"].get("max_tokens", 0) > 0
    assert "max_tokens" not in reasons["step"]
    assert reasons["step"]["answer"] > reasons["path"].get("answer", 0)


def test_killed_reference_run_resumes_into_the_uninterrupted_tree(tmp_path: Path) -> None:
    """Resume rebuilds the per-step token counts and the best-first child order from SQLite:
    a reference-profile run killed mid-search and resumed equals the uninterrupted one."""
    extra = ["--profile", "reference"]
    with start_simulator("--template", "authors-llemma") as fast:
        expected_db = tmp_path / "expected.db"
        done = rebase(expected_db, *search_args(fast.url, budget=16, limit=6, extra=extra))
        assert done.returncode == 0, done.stderr
        expected = dump_run(expected_db, run_ids(expected_db)[-1])
    with start_simulator("--template", "authors-llemma", "--base-ms", "60") as slow:
        url = slow.url
        result = kill_and_resume(
            tmp_path / "killed.db",
            search_args(url, budget=16, limit=6, concurrency=2, extra=extra),
            lambda run_id: ["search", "--run", f"run-{run_id}", "--policy", url, "--reward", url],
            kills=1,
            rng=random.Random(13),
            delay=(0.3, 0.8),
            logs=tmp_path / "logs",
        )
    assert result.mid_run_kills == 1, "the run finished before the kill: lengthen it"
    assert result.final is not None and result.final.returncode == 0, result.final.stderr
    assert diff_runs(expected, dump_run(tmp_path / "killed.db", result.run_id)) == []
    for nodes in load_problems(tmp_path / "killed.db").values():
        replay(nodes)


def test_reference_export_writes_each_path_as_the_policy_wrote_it(
    reference_db: Path, tmp_path: Path
) -> None:
    out = tmp_path / "answers.json"
    result = rebase(reference_db, "export", "latest", "--format", "reference", "-o", str(out))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(reference_db) as connection:
        leaves = connection.execute(
            "SELECT id FROM node WHERE terminal AND answer IS NOT NULL"
        ).fetchall()
        texts = set()
        for (node_id,) in leaves:
            steps = []
            while node_id is not None:
                node_id, text = connection.execute(
                    "SELECT parent_id, text FROM node WHERE id = ?", (node_id,)
                ).fetchone()
                steps.append(text)
            texts.add("".join(reversed(steps)))
    exported = {a["text"] for item in json.loads(out.read_text()) for a in item["model_answer"]}
    assert exported == texts
    assert not any("\n\n" in text for text in exported)
