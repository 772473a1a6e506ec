"""`rebase tree RUN PROBLEM`: the rich tree and the Graphviz source of one problem."""

from __future__ import annotations

import re
from pathlib import Path

import pydot
import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.reports.tree_view import dot_graph, load_problem_tree
from rebase_cli.store.database import Database
from tests.test_report_builders import add_tree, make_run, node


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    db = Database.open(path)
    run = make_run(db, simulated=True, policy_model="sim-policy")
    tree = [
        node(0.9, node(0.8, answer="18", text="The answer is: 18"), node(0.5, answer="17")),
        node(0.6, node(0.7)),
        node(0.3, pruned=True, text='He said "stop"'),
    ]
    add_tree(db, run, 3, "18", tree, question="How many eggs?", finish=False)
    db.close()
    return path


def invoke(db_file: Path, *args: str):
    return CliRunner().invoke(app, ["--db", str(db_file), "tree", *args], env={"COLUMNS": "200"})


def test_rich_tree_shows_scores_allocations_answers_and_verdicts(db_file: Path) -> None:
    result = invoke(db_file, "run-1", "3")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "run-1 · problem 3" in out and "reference 18" in out and "How many eggs?" in out
    assert "SIMULATED — synthetic accuracy" in out
    assert "d1 #0 · score 0.900 · → 2 children" in out
    assert "d1 #2 · score 0.300 · pruned" in out
    assert "d2 #0 · score 0.800 · answer 18 (correct)" in out
    assert "d2 #1 · score 0.500 · answer 17 (wrong)" in out
    assert "d1 #1 · score 0.600 · → 1 child " in out
    assert "d2 #2 · score 0.700 · open" in out  # the search stopped before deciding on it
    # children are drawn under their parents
    assert out.index("d1 #0") < out.index("d2 #0") < out.index("d2 #1") < out.index("d1 #1")


def test_depth_limit_hides_deeper_nodes(db_file: Path) -> None:
    result = invoke(db_file, "run-1", "3", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert "d2 #" not in result.stdout
    assert "… 2 nodes below depth 1" in result.stdout and "… 1 nodes below depth 1" in result.stdout


def test_dot_output(db_file: Path) -> None:
    result = invoke(db_file, "latest", "3", "--format", "dot")
    assert result.exit_code == 0, result.output
    dot = result.stdout
    assert dot.startswith('digraph "run-1 problem 3" {')
    assert len(re.findall(r"^  n\d+ \[", dot, flags=re.M)) == 7  # root + 3 + 3
    assert len(re.findall(r"^  n\d+ -> n\d+;", dot, flags=re.M)) == 6
    assert dot.count('fillcolor="#c8e6c9"') == 1  # the right answer
    assert dot.count('fillcolor="#ffcdd2"') == 1  # the wrong one
    assert dot.count('fillcolor="#eeeeee"') == 1  # the pruned node
    assert 'He said \\"stop\\"' in dot  # quotes in step text are escaped


def test_dot_output_is_valid_graphviz(db_file: Path) -> None:
    """pydot's DOT grammar parses the output into one graph with every node and edge (no
    Graphviz binary needed)."""
    source = invoke(db_file, "run-1", "3", "-f", "dot").stdout
    graphs = pydot.graph_from_dot_data(source)
    assert graphs is not None and len(graphs) == 1
    graph = graphs[0]
    # Default attribute statements (`node [...]`) are listed as nodes too; count real ones.
    assert len([n for n in graph.get_nodes() if re.fullmatch(r"n\d+", n.get_name())]) == 7
    assert len(graph.get_edges()) == 6


def test_depth_limit_in_dot(db_file: Path) -> None:
    db = Database.open(db_file)
    try:
        from rebase_cli.store.runs import resolve_run

        tree = load_problem_tree(db, resolve_run(db, "1"), 3)
    finally:
        db.close()
    assert len(re.findall(r"^  n\d+ \[", dot_graph(tree, 1), flags=re.M)) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [(["run-1", "99"], "no problem with dataset index 99"), (["run-7", "0"], "no run 'run-7'")],
)
def test_missing_problem_or_run(db_file: Path, args, message: str) -> None:
    result = invoke(db_file, *args)
    assert result.exit_code == 1 and message in result.stderr
