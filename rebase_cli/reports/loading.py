"""A run as the reports see it: the reader's tables plus the finished answers, each with its
path score under every aggregate.

Nodes come from `RunReader.tables` as columns; only the few finished answers are sorted and
kept per answer, and no step text is read (`tree_view` and `export` read text per problem,
where they need it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rebase_cli.records import AllocationDepth, NodeTable, ProblemTable, RunRecord
from rebase_cli.reports.aggregates import path_aggregates
from rebase_cli.store.database import Database
from rebase_cli.store.reader import RunReader, run_record


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
class RunData:
    run: RunRecord
    problems: ProblemTable
    answers: FinishedAnswers
    nodes: NodeStats
    allocations: list[AllocationDepth] = field(default_factory=list)


def load_run_data(db: Database, run: RunRecord, score_set_id: int | None = None) -> RunData:
    """Everything a report needs about `run`, read in one read transaction; node scores from
    the score set `score_set_id` when given (it must score every node below the roots)."""
    record = run_record(run)
    tables = RunReader(db).tables(record.id, score_set_id)
    nodes = tables.nodes
    return RunData(
        record,
        tables.problems,
        _finished_answers(nodes),
        # Only what the per-depth view needs outlives this call, not the whole node table.
        NodeStats(nodes.problem, nodes.depth, nodes.terminal),
        tables.allocations,
    )


def _finished_answers(nodes: NodeTable) -> FinishedAnswers:
    aggregates = path_aggregates(nodes.id, nodes.parent, nodes.depth, nodes.score)
    has_answer = nodes.answer != None  # noqa: E711  (elementwise on an object array)
    finished = np.flatnonzero(nodes.terminal & has_answer)
    # Tie order: dataset position, then depth, then ordinal.
    position, depth, ordinal = nodes.problem, nodes.depth, nodes.ordinal
    finished = finished[np.lexsort((ordinal[finished], depth[finished], position[finished]))]
    return FinishedAnswers(
        problem=position[finished],
        node_id=nodes.id[finished],
        depth=depth[finished],
        ordinal=ordinal[finished],
        answer=nodes.answer[finished].tolist(),
        scores={name: values[finished] for name, values in aggregates.items()},
    )
