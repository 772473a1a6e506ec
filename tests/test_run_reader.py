"""RunReader's records on a real SQLite file (conftest's `db`), written through the store API
as a search writes it (`tests/test_report_builders.py`)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rebase_cli.domain import LevelCounters, TerminalReason
from rebase_cli.errors import NotFoundError
from rebase_cli.records import AllocationDepth, Coverage, NodeAllocation, RunRecord
from rebase_cli.store import score_sets
from rebase_cli.store.database import Database
from rebase_cli.store.groups import save_group
from rebase_cli.store.models import Run
from rebase_cli.store.reader import RunReader, run_record
from tests.test_report_builders import add_tree, make_run, node


@pytest.fixture
def run(db: Database) -> Run:
    """Three problems written out of dataset order: 2 (done, two answers), 0 (failed after
    one level) and 1 (left pending after one level: an EOS path and an open node)."""
    made = make_run(db, name="first", config={"template": "llemma-metamath", "budget": 4})
    add_tree(
        db,
        made,
        2,
        "18",
        [node(0.9, node(0.8, answer="18"), node(0.5, answer="17")), node(0.2, pruned=True)],
        subject="Algebra",
        level=2,
    )
    add_tree(db, made, 0, "3", [node(0.7)], error="reward server returned 500")
    add_tree(db, made, 1, "5", [node(0.4, reason=TerminalReason.EOS), node(0.6)], finish=False)
    return made


def test_resolve_by_id_name_and_latest(db: Database, run: Run) -> None:
    reader = RunReader(db)
    second = make_run(db, name="7")  # a name that looks like an id of no run
    assert reader.resolve(f"run-{run.id}").id == run.id
    assert reader.resolve(f" {run.id} ").id == run.id
    assert reader.resolve("first").id == run.id
    assert reader.resolve("latest").id == second.id
    assert reader.resolve("7").id == second.id  # no run 7: the name wins
    with pytest.raises(NotFoundError, match=r"no run 'nope' in .*test\.db"):
        reader.resolve("nope")


def test_run_record_has_the_stored_fields(db: Database, run: Run) -> None:
    record = RunReader(db).resolve("first")
    assert record == run_record(run)
    assert (record.method, record.budget, record.status, record.name) == (
        "rebase",
        4,
        "done",
        "first",
    )
    assert record.config == {"template": "llemma-metamath", "budget": 4}
    assert record.created_at.tzinfo is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.status = "failed"  # type: ignore[misc]


def test_config_that_is_not_an_object_reads_as_empty() -> None:
    fields = {f.name: None for f in dataclasses.fields(RunRecord)}
    assert RunRecord(**{**fields, "config_json": "[1, 2]"}).config == {}
    assert RunRecord(**{**fields, "config_json": "{not json"}).config == {}


def test_runs_newest_first_with_counts_by_status(db: Database, run: Run) -> None:
    empty = make_run(db)
    listings = RunReader(db).runs()
    assert [listing.run.id for listing in listings] == [empty.id, run.id]
    assert dict(listings[0].problems) == {}
    assert dict(listings[1].problems) == {"done": 1, "failed": 1, "pending": 1}


def test_totals(db: Database, run: Run) -> None:
    totals = RunReader(db).totals(run.id)
    # Levels: problem 2 has two (100+200 prompt tokens), problems 0 and 1 one each (100).
    assert (totals.problems, totals.done, totals.failed, totals.pending) == (3, 1, 1, 1)
    assert (totals.nodes, totals.finished_answers) == (2 + 3 + 5, 2)
    assert totals.policy_prompt_tokens == 300 + 100 + 100
    assert (totals.policy_requests, totals.retries) == (3 + 1 + 1, 1)


def test_group_runs_oldest_first_and_none_for_no_group(db: Database) -> None:
    reader = RunReader(db)
    save_group(db, "sweep", {"budgets": [2, 4]})
    assert reader.group_runs("sweep") == []
    assert reader.group_runs("other") is None
    ids = []
    for budget in (4, 2):
        made = make_run(db, budget=budget)
        with db.write() as session:
            stored = session.get(Run, made.id)
            stored.group_name = "sweep"
            session.add(stored)
        ids.append(made.id)
    assert [r.id for r in reader.group_runs("sweep") or []] == ids


def test_tables_are_in_dataset_order_with_unpacked_nodes(db: Database, run: Run) -> None:
    tables = RunReader(db).tables(run.id)
    problems, nodes = tables.problems, tables.nodes
    assert problems.index.tolist() == [0, 1, 2]
    assert problems.reference == ["3", "5", "18"]
    assert problems.status == ["failed", "pending", "done"]
    assert problems.error == ["reward server returned 500", None, None]
    assert (problems.subject[2], problems.level[2], problems.level[0]) == ("Algebra", 2, None)
    assert problems.counters["policy_prompt_tokens"].tolist() == [100, 100, 300]
    assert problems.depth_completed.tolist() == [1, 1, 2]
    assert len(nodes) == 2 + 3 + 5
    # Node columns name problems by their position in the table, not by id.
    per_problem = np.bincount(nodes.problem, minlength=3).tolist()
    assert per_problem == [2, 3, 5]
    rows = sorted(
        zip(
            nodes.problem.tolist(),
            nodes.depth.tolist(),
            nodes.ordinal.tolist(),
            nodes.terminal.tolist(),
            nodes.answer.tolist(),
            nodes.score.tolist(),
            strict=True,
        )
    )
    assert [r for r in rows if r[0] == 2] == [
        (2, 0, 0, False, None, 1.0),
        (2, 1, 0, False, None, 0.9),
        (2, 1, 1, False, None, 0.2),
        (2, 2, 0, True, "18", 0.8),
        (2, 2, 1, True, "17", 0.5),
    ]
    assert (1, 1, 0, True, None, 0.4) in rows  # an EOS path: terminal without an answer
    roots = nodes.depth == 0
    assert (nodes.parent[roots] == -1).all() and (nodes.parent[~roots] > 0).all()


def test_allocation_totals_per_depth(db: Database, run: Run) -> None:
    allocations = RunReader(db).tables(run.id).allocations
    # Depth 0: the roots of problems 2, 0 and 1 (3 open, all expanded, 2 + 1 + 2 children);
    # depth 1: problem 2's two nodes, one expanded into 2, one pruned.
    assert allocations == [
        AllocationDepth(depth=0, open=3, expanded=3, pruned=0, children=5, problems=3),
        AllocationDepth(depth=1, open=2, expanded=1, pruned=1, children=2, problems=1),
    ]


def test_tables_with_a_score_set_take_its_scores_below_the_roots(db: Database, run: Run) -> None:
    reader = RunReader(db)
    created = score_sets.open_score_set(db, run.id, "other", "http://prm", "prm-2", "math-shepherd")
    ids = RunReader(db).tables(run.id).nodes
    below = ids.id[ids.depth > 0].tolist()
    assert reader.coverage(created.id, run.id) == Coverage(scored=0, total=len(below))
    score_sets.add_scores(db, created.id, [(node_id, 0.25) for node_id in below])
    assert reader.coverage(created.id, run.id) == Coverage(len(below), len(below))
    nodes = reader.tables(run.id, created.id).nodes
    assert set(nodes.score[nodes.depth > 0].tolist()) == {0.25}
    assert set(nodes.score[nodes.depth == 0].tolist()) == {1.0}


def test_score_sets_by_name_and_listed(db: Database, run: Run) -> None:
    reader = RunReader(db)
    with pytest.raises(NotFoundError, match="has no score set 'a'") as missing:
        reader.score_set(run.id, "a")
    assert "rebase rescore" in str(missing.value.hint)
    score_sets.open_score_set(db, run.id, "a", "http://a", "prm-a", "math-shepherd")
    score_sets.open_score_set(db, run.id, "b", "http://b", None, "math-shepherd")
    found = reader.score_set(run.id, "b")
    assert (found.name, found.reward_url, found.reward_model, found.status) == (
        "b",
        "http://b",
        None,
        "running",
    )
    assert [s.name for s in reader.score_sets(run.id)] == ["a", "b"]
    with pytest.raises(NotFoundError) as other:
        reader.score_set(run.id, "c")
    assert other.value.hint == "its sets: a, b"


def test_problem_tree_has_nodes_in_order_and_allocations_by_node(db: Database, run: Run) -> None:
    stored = RunReader(db).problem_tree(run.id, 2)
    assert (stored.problem.index, stored.problem.reference, stored.problem.status) == (
        2,
        "18",
        "done",
    )
    assert [(n.depth, n.ordinal) for n in stored.nodes] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1)]
    root, kept, pruned, right, wrong = stored.nodes
    assert root.parent_id is None and root.text == ""
    assert (right.parent_id, right.terminal, right.terminal_reason, right.answer) == (
        kept.id,
        True,
        "answer",
        "18",
    )
    assert stored.allocations == {
        root.id: NodeAllocation(children=2, weight=1.0, subtree=None),
        kept.id: NodeAllocation(children=2, weight=0.5, subtree=None),
        pruned.id: NodeAllocation(children=0, weight=0.5, subtree=None),
    }
    assert wrong.id not in stored.allocations
    with pytest.raises(NotFoundError, match="no problem with dataset index 9"):
        RunReader(db).problem_tree(run.id, 9)


def test_problem_nodes_stream_in_dataset_order(db: Database, run: Run) -> None:
    streamed = list(RunReader(db).iter_problem_nodes(run.id))
    assert [p.problem.index for p in streamed] == [0, 1, 2]
    first = streamed[0].problem
    assert (first.source_id, first.question, first.error) == (
        "src-0",
        "Question 0?",
        "reward server returned 500",
    )
    assert (first.policy_prompt_tokens, first.policy_completion_tokens) == (100, 40)
    assert [len(p.nodes) for p in streamed] == [2, 3, 5]
    assert streamed[2].nodes == RunReader(db).problem_tree(run.id, 2).nodes


def test_answer_pairs_are_distinct(db: Database, run: Run) -> None:
    add_tree(
        db,
        run,
        3,
        "18",
        [node(0.5, answer="18"), node(0.4, answer="18")],
        counters=lambda depth: LevelCounters(),
    )
    assert sorted(RunReader(db).answer_pairs(run.id)) == [("17", "18"), ("18", "18")]
