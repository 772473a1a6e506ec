"""Reading a run for a report: plain SQL through the driver cursor into numpy arrays.

A budget-64 run over GSM8K holds about half a million nodes, so the cost of a report is the
cost of turning rows into Python objects. Nodes therefore come in one query of six columns, with
depth, ordinal and the terminal flag packed into one integer by SQLite, no ORDER BY (numpy sorts
the few finished answers instead), and straight into a structured numpy array. No step text is
read: `tree_view` and `export` read text per problem, where they need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rebase_cli.reports.aggregates import path_aggregates
from rebase_cli.store.database import Database
from rebase_cli.store.grades import driver_cursor
from rebase_cli.store.models import Run

COUNTERS = (
    "policy_prompt_tokens",
    "policy_completion_tokens",
    "reward_tokens",
    "policy_requests",
    "reward_requests",
    "retries",
)

_PROBLEMS = (
    "SELECT id, dataset_index, reference_answer, subject, level, status, error, depth_completed, "
    + ", ".join(COUNTERS)
    + ", elapsed_seconds FROM problem WHERE run_id = ? ORDER BY dataset_index"
)
# `packed` = depth << 32 | ordinal << 1 | terminal: one Python int instead of three per row.
# Depths and ordinals stay far below 2**31 (SearchConfig caps depth at 10,000 and budget at
# 65,536), so nothing overlaps.
_NODES = (
    "SELECT n.id, coalesce(n.parent_id, -1), n.problem_id, n.score, "
    "(n.depth << 32) | (n.ordinal << 1) | (n.terminal != 0), n.answer "
    "FROM node AS n JOIN problem AS p ON p.id = n.problem_id WHERE p.run_id = ?"
)
# The same rows with each node's score taken from a score set (the root keeps its own 1.0).
_NODES_SCORED = (
    "SELECT n.id, coalesce(n.parent_id, -1), n.problem_id, "
    "CASE WHEN n.depth = 0 THEN n.score ELSE s.score END, "
    "(n.depth << 32) | (n.ordinal << 1) | (n.terminal != 0), n.answer "
    "FROM node AS n JOIN problem AS p ON p.id = n.problem_id "
    "LEFT JOIN node_score AS s ON s.node_id = n.id AND s.score_set_id = ? WHERE p.run_id = ?"
)
_NODE_DTYPE = np.dtype(
    [
        ("id", np.int64),
        ("parent", np.int64),
        ("problem", np.int64),
        ("score", np.float64),
        ("packed", np.int64),
        ("answer", object),
    ]
)
_ALLOCATIONS = (
    "SELECT a.depth, count(*), sum(a.children > 0), sum(a.children = 0), sum(a.children), "
    "count(DISTINCT a.problem_id) FROM allocation AS a JOIN problem AS p ON p.id = a.problem_id "
    "WHERE p.run_id = ? GROUP BY a.depth ORDER BY a.depth"
)


@dataclass(frozen=True)
class ProblemTable:
    """The run's problems in dataset order; every sequence is aligned with `index`."""

    ids: np.ndarray
    index: np.ndarray
    reference: list[str]
    subject: list[str | None]
    level: list[int | None]
    status: list[str]
    error: list[str | None]
    depth_completed: np.ndarray
    counters: dict[str, np.ndarray]
    elapsed_seconds: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class FinishedAnswers:
    """Terminal nodes with an answer, ordered by (problem position, depth, ordinal).

    `problem` is the position of the answer's problem in the ProblemTable; `scores` maps each
    aggregate (last/min/prod/mean) to the answer's path score."""

    problem: np.ndarray
    node_id: np.ndarray
    depth: np.ndarray
    ordinal: np.ndarray
    answer: list[str]
    scores: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.problem.shape[0])


@dataclass(frozen=True)
class NodeStats:
    """Per-node facts the per-depth view needs: problem position, depth, terminal flag."""

    problem: np.ndarray
    depth: np.ndarray
    terminal: np.ndarray


@dataclass(frozen=True)
class AllocationDepth:
    """Totals of the allocation rows recorded at one depth across the run's problems."""

    depth: int
    open: int
    expanded: int
    pruned: int
    children: int
    problems: int


@dataclass(frozen=True)
class RunData:
    run: Run
    problems: ProblemTable
    answers: FinishedAnswers
    nodes: NodeStats
    allocations: list[AllocationDepth] = field(default_factory=list)


def load_run_data(db: Database, run: Run, score_set_id: int | None = None) -> RunData:
    """Everything a report needs about `run`, read in one read transaction; node scores from
    the score set `score_set_id` when given (it must score every node below the roots)."""
    with db.read() as session:
        cursor = driver_cursor(session)
        try:
            problem_rows = cursor.execute(_PROBLEMS, (run.id,)).fetchall()
            if score_set_id is None:
                node_rows = cursor.execute(_NODES, (run.id,)).fetchall()
            else:
                node_rows = cursor.execute(_NODES_SCORED, (score_set_id, run.id)).fetchall()
            allocation_rows = cursor.execute(_ALLOCATIONS, (run.id,)).fetchall()
        finally:
            cursor.close()
    problems = _problem_table(problem_rows)
    answers, nodes = _nodes(node_rows, problems.ids)
    allocations = [
        AllocationDepth(int(d), int(o), int(e or 0), int(p or 0), int(c or 0), int(n))
        for d, o, e, p, c, n in allocation_rows
    ]
    return RunData(run, problems, answers, nodes, allocations)


def _problem_table(rows: Sequence[tuple]) -> ProblemTable:
    columns = list(zip(*rows, strict=True)) if rows else [()] * (8 + len(COUNTERS) + 1)
    counters = {name: np.asarray(columns[8 + i], dtype=np.int64) for i, name in enumerate(COUNTERS)}
    return ProblemTable(
        ids=np.asarray(columns[0], dtype=np.int64),
        index=np.asarray(columns[1], dtype=np.int64),
        reference=list(columns[2]),
        subject=list(columns[3]),
        level=[None if v is None else int(v) for v in columns[4]],
        status=list(columns[5]),
        error=list(columns[6]),
        depth_completed=np.asarray(columns[7], dtype=np.int64),
        counters=counters,
        elapsed_seconds=np.asarray(columns[-1], dtype=np.float64),
    )


def _nodes(rows: Sequence[tuple], problem_ids: np.ndarray) -> tuple[FinishedAnswers, NodeStats]:
    table = np.array(rows, dtype=_NODE_DTYPE) if rows else np.zeros(0, dtype=_NODE_DTYPE)
    packed = table["packed"]
    depth = packed >> 32
    ordinal = (packed >> 1) & 0x7FFFFFFF
    terminal = (packed & 1).astype(bool)
    aggregates = path_aggregates(table["id"], table["parent"], depth, table["score"])
    # Problem ids are not in dataset order in general: map them to ProblemTable positions.
    sorter = np.argsort(problem_ids, kind="stable")
    position = sorter[np.searchsorted(problem_ids, table["problem"], sorter=sorter)]
    has_answer = table["answer"] != None  # noqa: E711  (elementwise on an object array)
    finished = np.flatnonzero(terminal & has_answer)
    # Tie order: dataset position, then depth, then ordinal.
    finished = finished[np.lexsort((ordinal[finished], depth[finished], position[finished]))]
    answers = FinishedAnswers(
        problem=position[finished],
        node_id=table["id"][finished],
        depth=depth[finished],
        ordinal=ordinal[finished],
        answer=table["answer"][finished].tolist(),
        scores={name: values[finished] for name, values in aggregates.items()},
    )
    return answers, NodeStats(position, depth, terminal)
