"""DVTS and particle filtering end to end: real simulator, real `rebase` children, real SQLite.

SIGKILL mid-run and resume must give exactly the tree of an uninterrupted run (particle
filtering's resampling draws included), every level must keep the width accounting, and
`rebase tree` and `rebase report` must show the decisions.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from tests.search_helpers import (
    check_allocations,
    diff_runs,
    dump_run,
    integrity,
    kill_and_resume,
    query,
    rebase,
    run_ids,
    run_status,
    search_args,
    start_simulator,
)

BUDGET = 8
LIMIT = 10


@pytest.fixture(scope="module")
def fast_sim():
    with start_simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def slow_sim():
    with start_simulator("--base-ms", "60") as simulator:
        yield simulator


@pytest.fixture(scope="module")
def slower_sim():
    # A whole-solution problem is two requests, not two per level: at 60 ms a request the
    # ten problems can finish between two kills.
    with start_simulator("--base-ms", "250") as simulator:
        yield simulator


def _method_args(method: str) -> list[str]:
    if method == "whole":
        return ["--method", "sample", "--sample-mode", "whole"]
    return ["--method", method, "--beam-expansion", "4"]


@pytest.mark.parametrize("method", ["dvts", "particle", "whole"])
def test_sigkill_then_resume_gives_the_uninterrupted_tree(
    method: str, fast_sim, slow_sim, slower_sim, tmp_path: Path
) -> None:
    reference = tmp_path / "reference.db"
    args = search_args(fast_sim.url, budget=BUDGET, limit=LIMIT, extra=_method_args(method))
    done = rebase(reference, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = dump_run(reference, run_ids(reference)[-1])
    assert check_allocations(expected, BUDGET) == []

    db = tmp_path / "killed.db"
    url = slower_sim.url if method == "whole" else slow_sim.url
    # A whole-solution problem is two requests, not two per level: one problem at a time, on a
    # slower server, keeps the run long enough for three kills to land mid-run.
    concurrency = 1 if method == "whole" else 2
    result = kill_and_resume(
        db,
        search_args(
            url, budget=BUDGET, limit=LIMIT, concurrency=concurrency, extra=_method_args(method)
        ),
        lambda run_id: ["search", "--run", f"run-{run_id}", "--policy", url, "--reward", url],
        kills=3,
        rng=random.Random(14),
        delay=(0.2, 0.8),
        logs=tmp_path / "logs",
    )
    assert result.mid_run_kills >= 3, "the run finished before the kills: slow it down"
    assert result.final is not None and result.final.returncode == 0, result.final
    assert result.integrity == ["ok"] * len(result.integrity)
    assert run_status(db, result.run_id) == "done"
    assert diff_runs(expected, dump_run(db, result.run_id)) == []
    assert integrity(db) == "ok"


def test_every_problem_of_a_dvts_run_finishes_the_budget_in_its_subtrees(
    fast_sim, tmp_path: Path
) -> None:
    db = tmp_path / "dvts.db"
    args = search_args(fast_sim.url, budget=BUDGET, limit=6, extra=_method_args("dvts"))
    done = rebase(db, *args)
    assert done.returncode == 0, done.stderr
    finished = query(
        db,
        "SELECT problem_id, count(*) FROM node WHERE terminal = 1 GROUP BY problem_id",
    )
    assert [count for _, count in finished] == [BUDGET] * 6
    subtrees = query(
        db,
        "SELECT DISTINCT subtree FROM allocation WHERE depth > 0 ORDER BY subtree",
    )
    assert subtrees == [(0,), (1,)]  # 8 / 4 subtrees, recorded with every decision below the root
    tree = rebase(db, "tree", "run-1", "0")
    assert tree.returncode == 0, tree.stderr
    assert "subtree 1" in tree.stdout


def test_particle_runs_show_resampling_in_the_tree_and_the_per_depth_report(
    fast_sim, tmp_path: Path
) -> None:
    db = tmp_path / "particle.db"
    args = search_args(fast_sim.url, budget=BUDGET, limit=4, extra=_method_args("particle"))
    done = rebase(db, *args, "--particle-temperature", "0.1")
    assert done.returncode == 0, done.stderr
    config = json.loads(query(db, "SELECT config_json FROM run")[0][0])
    assert (config["method"], config["particle_temperature"]) == ("particle", 0.1)
    tree = rebase(db, "tree", "run-1", "1")
    assert tree.returncode == 0, tree.stderr
    assert "resampled →" in tree.stdout
    report = rebase(db, "report", "run-1", "--format", "json")
    assert report.returncode == 0, report.stderr
    per_depth = json.loads(report.stdout)["runs"][0]["allocation"]
    # Depth 0: the roots give every particle its first step; deeper, the children at each
    # depth are the nodes of the next one, and every level resamples the width left.
    assert per_depth[0]["children"] == 4 * BUDGET
    for row, below in itertools.pairwise(per_depth):
        assert row["children"] == below["nodes"]
    for row in per_depth[1:]:
        assert row["children"] == row["nodes"] - row["terminal"]
    assert sum(row["answers"] for row in per_depth) <= 4 * BUDGET
