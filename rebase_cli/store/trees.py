"""Problem trees: the level commit (the orchestrator's hot path) and loading committed nodes.

A level commit writes its rows with `executemany` through the driver cursor of the caller's
transaction, with no ORM object per node: the rows and columns are those the ORM models
describe (store/models.py), and a test compares the two paths.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

from sqlmodel import select

from rebase_cli.domain import LevelCommit, LevelCounters, NewNode, TerminalReason
from rebase_cli.errors import NotFoundError, StoreError
from rebase_cli.records import COUNTERS
from rebase_cli.store.database import Database
from rebase_cli.store.models import NodeRow, stored_now

_INSERT_NODE = (
    "INSERT INTO node (problem_id, parent_id, depth, ordinal, text, score, path_tokens, "
    "prompt_tokens, completion_tokens, finish_reason, terminal, terminal_reason, answer, seed) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_ALLOCATION = (
    "INSERT INTO allocation (problem_id, depth, node_id, weight, children, subtree) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPDATE_PROBLEM = (
    "UPDATE problem SET depth_completed = ?, "
    + "".join(f"{name} = {name} + ?, " for name in COUNTERS)
    + "elapsed_seconds = elapsed_seconds + ?, started_at = coalesce(started_at, ?) WHERE id = ?"
)
_SELECT_NODES = (
    "SELECT n.depth, n.ordinal, p.ordinal, n.text, n.score, n.path_tokens, n.prompt_tokens, "
    "n.completion_tokens, n.finish_reason, n.terminal_reason, n.answer, n.seed "
    "FROM node AS n LEFT JOIN node AS p ON p.id = n.parent_id "
    "WHERE n.problem_id = ? ORDER BY n.depth, n.ordinal"
)


def write_levels(
    cursor: sqlite3.Cursor, problem_id: int, levels: Sequence[LevelCommit], elapsed: float = 0.0
) -> None:
    """Write consecutive levels of one problem inside the caller's transaction.

    Each level writes its nodes, the allocation that produced them (against the parents at
    depth - 1), adds its counters to the problem's and sets `depth_completed`; `elapsed` is
    added once. A level that is not the next one is refused, so a replayed level can never
    duplicate nodes; the caller's rollback then leaves nothing of any of them."""
    if not levels:
        return
    row = cursor.execute(
        "SELECT depth_completed FROM problem WHERE id = ?", (problem_id,)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"no problem with id {problem_id}")
    completed = row[0]
    added = LevelCounters()
    for level in levels:
        check_follows(problem_id, level, completed)
        parents: dict[int, int] = {}
        if level.depth > 0:
            # Read after the previous level's inserts: its nodes are this level's parents.
            parents = dict(
                cursor.execute(
                    "SELECT ordinal, id FROM node WHERE problem_id = ? AND depth = ?",
                    (problem_id, level.depth - 1),
                ).fetchall()
            )
        check_parents(problem_id, level, parents.keys())
        allocations = [
            (
                problem_id,
                level.depth - 1,
                parents[parent_ordinal],
                weight,
                children,
                subtree[0] if subtree else None,
            )
            for parent_ordinal, weight, children, *subtree in level.allocations
        ]
        nodes = [
            (
                problem_id,
                None if node.parent_ordinal is None else parents[node.parent_ordinal],
                node.depth,
                node.ordinal,
                node.text,
                node.score,
                node.path_tokens,
                node.prompt_tokens,
                node.completion_tokens,
                node.finish_reason,
                node.terminal_reason is not None,
                None if node.terminal_reason is None else node.terminal_reason.value,
                node.answer,
                node.seed,
            )
            for node in level.nodes
        ]
        cursor.executemany(_INSERT_ALLOCATION, allocations)
        cursor.executemany(_INSERT_NODE, nodes)
        added = add_counters(added, level.counters)
        completed = level.depth
    counters = (getattr(added, name) for name in COUNTERS)
    cursor.execute(_UPDATE_PROBLEM, (completed, *counters, elapsed, stored_now(), problem_id))


def add_counters(a: LevelCounters, b: LevelCounters) -> LevelCounters:
    """`a` and `b` summed field by field (what a problem's counters become after a level)."""
    return LevelCounters(*(getattr(a, name) + getattr(b, name) for name in COUNTERS))


def check_follows(problem_id: int, level: LevelCommit, completed: int) -> None:
    """StoreError unless `level` is the one after the last committed depth `completed`, so a
    replayed level can never duplicate nodes."""
    if level.depth != completed + 1:
        raise StoreError(
            f"level {level.depth} of problem {problem_id} does not follow committed level "
            f"{completed}"
        )


def check_parents(problem_id: int, level: LevelCommit, known: Collection[int]) -> None:
    """StoreError when an allocation or a node of `level` names a parent ordinal that is not
    a node at depth - 1 (`known`), before anything of the level is written."""
    named = {allocation[0] for allocation in level.allocations}
    named.update(n.parent_ordinal for n in level.nodes if n.parent_ordinal is not None)
    missing = sorted(named.difference(known))
    if missing:
        raise StoreError(
            f"level {level.depth} of problem {problem_id} names parent {missing[0]}, "
            f"which is not a node at depth {level.depth - 1}"
        )


def read_nodes(cursor: sqlite3.Cursor, problem_id: int) -> tuple[NewNode, ...]:
    """A problem's committed nodes ordered by (depth, ordinal), equal to those committed."""
    return tuple(
        NewNode(
            depth=depth,
            ordinal=ordinal,
            parent_ordinal=parent_ordinal,
            text=text,
            score=score,
            path_tokens=path_tokens,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish_reason,
            terminal_reason=None if reason is None else TerminalReason(reason),
            answer=answer,
            seed=seed,
        )
        for (
            depth,
            ordinal,
            parent_ordinal,
            text,
            score,
            path_tokens,
            prompt_tokens,
            completion_tokens,
            finish_reason,
            reason,
            answer,
            seed,
        ) in cursor.execute(_SELECT_NODES, (problem_id,)).fetchall()
    )


def load_tree(db: Database, problem_id: int) -> list[NodeRow]:
    """All node rows of a problem ordered by (depth, ordinal), with their ids (rescoring and
    reports address nodes by id)."""
    with db.read() as session:
        return list(
            session.exec(
                select(NodeRow)
                .where(NodeRow.problem_id == problem_id)
                .order_by(NodeRow.depth, NodeRow.ordinal)
            ).all()
        )
