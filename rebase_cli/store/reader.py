"""RunReader: every query the reports and the run commands (`runs`, `report`, `tree`,
`export`) make, returning the records of `rebase_cli.records`.

Each public method is one read transaction, so what it returns is one consistent view even
while a search commits levels. Bulk reads (a run's problems and nodes, a problem's tree, the
export's stream) go through the driver's cursor with plain SQL: a budget-64 run over GSM8K
holds about half a million nodes, and an ORM object per row would cost more than the report.
Runs and score sets are few and go through SQLModel, whose column types parse the dates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlmodel import col, select

from rebase_cli.errors import NotFoundError
from rebase_cli.records import (
    COUNTERS,
    AllocationDepth,
    Coverage,
    NodeAllocation,
    NodeRecord,
    NodeTable,
    ProblemNodes,
    ProblemRecord,
    ProblemTable,
    ProblemTreeRecord,
    RunListing,
    RunRecord,
    RunTables,
    RunTotals,
    ScoreSetRecord,
)
from rebase_cli.store.database import Database, session_cursor
from rebase_cli.store.grades import AnswerReference
from rebase_cli.store.models import NodeRow, NodeScore, ProblemRow, Run, RunGroup, ScoreSet
from rebase_cli.store.problems import status_counts
from rebase_cli.store.runs import resolve_run

if TYPE_CHECKING:  # numpy is imported where the bulk tables are built: `rebase runs` needs none
    import numpy as np

_TABLE_PROBLEMS = (
    "SELECT id, dataset_index, reference_answer, subject, level, status, error, depth_completed, "
    + ", ".join(COUNTERS)
    + ", elapsed_seconds FROM problem WHERE run_id = ? ORDER BY dataset_index"
)
# `packed` = depth << 32 | ordinal << 1 | terminal: one Python int instead of three per row.
# Depths and ordinals stay far below 2**31 (SearchConfig caps depth at 10,000 and budget at
# 65,536), so nothing overlaps. No ORDER BY: the reports sort the few finished answers.
_TABLE_NODES = (
    "SELECT n.id, coalesce(n.parent_id, -1), n.problem_id, n.score, "
    "(n.depth << 32) | (n.ordinal << 1) | (n.terminal != 0), n.answer "
    "FROM node AS n JOIN problem AS p ON p.id = n.problem_id WHERE p.run_id = ?"
)
# The same rows with each node's score taken from a score set (the root keeps its own 1.0).
_TABLE_NODES_SCORED = (
    "SELECT n.id, coalesce(n.parent_id, -1), n.problem_id, "
    "CASE WHEN n.depth = 0 THEN n.score ELSE s.score END, "
    "(n.depth << 32) | (n.ordinal << 1) | (n.terminal != 0), n.answer "
    "FROM node AS n JOIN problem AS p ON p.id = n.problem_id "
    "LEFT JOIN node_score AS s ON s.node_id = n.id AND s.score_set_id = ? WHERE p.run_id = ?"
)
_ALLOCATION_DEPTHS = (
    "SELECT a.depth, count(*), sum(a.children > 0), sum(a.children = 0), sum(a.children), "
    "count(DISTINCT a.problem_id) FROM allocation AS a JOIN problem AS p ON p.id = a.problem_id "
    "WHERE p.run_id = ? GROUP BY a.depth ORDER BY a.depth"
)

# Column order of ProblemRecord and NodeRecord.
_PROBLEM_COLUMNS = (
    "id, dataset_index, source_id, question, reference_answer, status, error, "
    "policy_prompt_tokens, policy_completion_tokens, reward_tokens"
)
_PROBLEMS = f"SELECT {_PROBLEM_COLUMNS} FROM problem WHERE run_id = ? ORDER BY dataset_index"
_PROBLEM = f"SELECT {_PROBLEM_COLUMNS} FROM problem WHERE run_id = ? AND dataset_index = ?"
_NODES = (
    "SELECT id, parent_id, depth, ordinal, text, score, terminal != 0, terminal_reason, answer "
    "FROM node WHERE problem_id = ? ORDER BY depth, ordinal"
)
_ALLOCATIONS = "SELECT node_id, children, weight, subtree FROM allocation WHERE problem_id = ?"
_ANSWER_PAIRS = (
    "SELECT DISTINCT n.answer, p.reference_answer FROM node AS n "
    "JOIN problem AS p ON p.id = n.problem_id "
    "WHERE p.run_id = ? AND n.terminal = 1 AND n.answer IS NOT NULL"
)

_ALL_STATUS_COUNTS = "SELECT run_id, status, count(*) FROM problem GROUP BY run_id, status"
_COUNTER_SUMS = (
    "SELECT " + ", ".join(f"coalesce(sum({name}), 0)" for name in COUNTERS) + " "
    "FROM problem WHERE run_id = ?"
)
_NODE_COUNT = (
    "SELECT count(*) FROM node JOIN problem ON node.problem_id = problem.id "
    "WHERE problem.run_id = ?"
)
_ANSWER_COUNT = _NODE_COUNT + " AND node.answer IS NOT NULL"


def run_record(run: Run | RunRecord) -> RunRecord:
    """The record of a stored run row (a record is returned as it is)."""
    if isinstance(run, RunRecord):
        return run
    return RunRecord(**{f.name: getattr(run, f.name) for f in fields(RunRecord)})


class RunReader:
    """Read-only queries on `db` for the reports and the run commands (see module docstring)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------------------- runs

    def resolve(self, ref: str) -> RunRecord:
        """The run named by `run-42`, `42` (an id first, then a name), a name, or `latest`."""
        return run_record(resolve_run(self.db, ref))

    def group_runs(self, name: str) -> list[RunRecord] | None:
        """The runs of group `name`, oldest first; None when there is no such group."""
        with self.db.read() as session:
            if session.exec(select(RunGroup.id).where(RunGroup.name == name)).first() is None:
                return None
            runs = session.exec(
                select(Run).where(Run.group_name == name).order_by(col(Run.id))
            ).all()
        return [run_record(run) for run in runs]

    def runs(self) -> list[RunListing]:
        """Every run with its problem counts by status, newest first."""
        counts: dict[int, dict[str, int]] = {}
        with self.db.read() as session:
            runs = session.exec(select(Run).order_by(col(Run.id).desc())).all()
            with session_cursor(session) as cursor:
                for run_id, status, count in cursor.execute(_ALL_STATUS_COUNTS):
                    counts.setdefault(run_id, {})[status] = count
        return [RunListing(run_record(run), counts.get(run.id or 0, {})) for run in runs]

    def totals(self, run_id: int) -> RunTotals:
        """The run's problem counts, node and answer counts and summed counters."""
        with self.db.driver_read() as cursor:
            by_status = status_counts(cursor, run_id)
            sums = cursor.execute(_COUNTER_SUMS, (run_id,)).fetchone()
            nodes = cursor.execute(_NODE_COUNT, (run_id,)).fetchone()[0]
            answers = cursor.execute(_ANSWER_COUNT, (run_id,)).fetchone()[0]
        return RunTotals(
            problems=sum(by_status.values()),
            done=by_status.get("done", 0),
            failed=by_status.get("failed", 0),
            pending=by_status.get("pending", 0) + by_status.get("running", 0),
            nodes=nodes,
            finished_answers=answers,
            **dict(zip(COUNTERS, sums, strict=True)),
        )

    # ------------------------------------------------------------------------- score sets

    def score_set(self, run_id: int, name: str) -> ScoreSetRecord:
        """The run's score set `name`; NotFoundError names the sets it has."""
        with self.db.read() as session:
            found = session.exec(
                select(ScoreSet).where(ScoreSet.run_id == run_id, ScoreSet.name == name)
            ).first()
            names = (
                session.exec(select(ScoreSet.name).where(ScoreSet.run_id == run_id)).all()
                if found is None
                else []
            )
        if found is None:
            raise NotFoundError(
                f"run-{run_id} has no score set {name!r}",
                f"its sets: {', '.join(names)}"
                if names
                else f"make one with: rebase rescore run-{run_id} --reward URL --name {name}",
            )
        return _score_set_record(found)

    def score_sets(self, run_id: int) -> list[ScoreSetRecord]:
        """The run's score sets, oldest first."""
        with self.db.read() as session:
            found = session.exec(
                select(ScoreSet).where(ScoreSet.run_id == run_id).order_by(col(ScoreSet.id))
            ).all()
        return [_score_set_record(s) for s in found]

    def coverage(self, score_set_id: int, run_id: int) -> Coverage:
        """How many of the run's nodes below the roots the score set scores."""
        with self.db.read() as session:
            total = session.exec(
                select(func.count())
                .select_from(NodeRow)
                .join(ProblemRow, col(ProblemRow.id) == col(NodeRow.problem_id))
                .where(ProblemRow.run_id == run_id, NodeRow.depth > 0)
            ).one()
            scored = session.exec(
                select(func.count())
                .select_from(NodeScore)
                .where(NodeScore.score_set_id == score_set_id)
            ).one()
        return Coverage(int(scored), int(total))

    # ------------------------------------------------------------------------ bulk tables

    def tables(self, run_id: int, score_set_id: int | None = None) -> RunTables:
        """The run's problems, nodes and per-depth allocation totals; node scores from the
        score set `score_set_id` when given (it must score every node below the roots)."""
        with self.db.driver_read() as cursor:
            problem_rows = cursor.execute(_TABLE_PROBLEMS, (run_id,)).fetchall()
            if score_set_id is None:
                node_rows = cursor.execute(_TABLE_NODES, (run_id,)).fetchall()
            else:
                node_rows = cursor.execute(_TABLE_NODES_SCORED, (score_set_id, run_id)).fetchall()
            allocation_rows = cursor.execute(_ALLOCATION_DEPTHS, (run_id,)).fetchall()
        problems = _problem_table(problem_rows)
        allocations = [
            AllocationDepth(int(d), int(o), int(e or 0), int(p or 0), int(c or 0), int(n))
            for d, o, e, p, c, n in allocation_rows
        ]
        return RunTables(problems, _node_table(node_rows, problems.ids), allocations)

    # ----------------------------------------------------------------- trees and answers

    def problem_tree(self, run_id: int, index: int) -> ProblemTreeRecord:
        """Problem `index` (dataset index) of the run with its nodes and allocations."""
        with self.db.driver_read() as cursor:
            row = cursor.execute(_PROBLEM, (run_id, index)).fetchone()
            if row is None:
                raise NotFoundError(
                    f"run-{run_id} has no problem with dataset index {index}",
                    "problem numbers are 0-based dataset indices",
                )
            problem = ProblemRecord(*row)
            nodes = _node_records(cursor.execute(_NODES, (problem.id,)).fetchall())
            allocations = {
                node_id: NodeAllocation(children, weight, subtree)
                for node_id, children, weight, subtree in cursor.execute(
                    _ALLOCATIONS, (problem.id,)
                ).fetchall()
            }
        return ProblemTreeRecord(problem, nodes, allocations)

    def iter_problem_nodes(self, run_id: int) -> Iterator[ProblemNodes]:
        """The run's problems in dataset order, each with its nodes: one query per problem,
        all in one read transaction held until the iterator is exhausted or closed."""
        with self.db.driver_read() as cursor:
            problems = [ProblemRecord(*row) for row in cursor.execute(_PROBLEMS, (run_id,))]
            for problem in problems:
                yield ProblemNodes(
                    problem, _node_records(cursor.execute(_NODES, (problem.id,)).fetchall())
                )

    def answer_pairs(self, run_id: int) -> list[AnswerReference]:
        """Each distinct (answer, reference) pair of the run's finished answers."""
        with self.db.driver_read() as cursor:
            return [(a, r) for a, r in cursor.execute(_ANSWER_PAIRS, (run_id,)).fetchall()]


def _score_set_record(row: ScoreSet) -> ScoreSetRecord:
    return ScoreSetRecord(
        id=row.id or 0,
        run_id=row.run_id,
        name=row.name,
        reward_url=row.reward_url,
        reward_model=row.reward_model,
        reward_protocol=row.reward_protocol,
        status=row.status,
        error=row.error,
    )


def _node_records(rows: Sequence[tuple]) -> tuple[NodeRecord, ...]:
    return tuple(
        NodeRecord(node_id, parent, depth, ordinal, text, score, bool(terminal), reason, answer)
        for node_id, parent, depth, ordinal, text, score, terminal, reason, answer in rows
    )


def _problem_table(rows: Sequence[tuple]) -> ProblemTable:
    import numpy as np

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


def _node_table(rows: Sequence[tuple], problem_ids: np.ndarray) -> NodeTable:
    import numpy as np

    # The columns of _TABLE_NODES.
    dtype = np.dtype(
        [
            ("id", np.int64),
            ("parent", np.int64),
            ("problem", np.int64),
            ("score", np.float64),
            ("packed", np.int64),
            ("answer", object),
        ]
    )
    table = np.array(rows, dtype=dtype) if rows else np.zeros(0, dtype=dtype)
    packed = table["packed"]
    # Problem ids are not in dataset order in general: map them to ProblemTable positions.
    sorter = np.argsort(problem_ids, kind="stable")
    position = sorter[np.searchsorted(problem_ids, table["problem"], sorter=sorter)]
    return NodeTable(
        id=table["id"],
        parent=table["parent"],
        problem=position,
        score=table["score"],
        depth=packed >> 32,
        ordinal=(packed >> 1) & 0x7FFFFFFF,
        terminal=(packed & 1).astype(bool),
        answer=table["answer"],
    )
