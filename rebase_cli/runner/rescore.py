"""Offline re-scoring: every stored node of a run scored by another PRM into a score set.

Problems go `concurrency` at a time; within a problem, level by level from depth 1, every
parent's unscored children are scored in one call (the same request the search makes: the
question, the parent's path and the sibling steps), and the level's scores are committed in one
transaction. Nodes already in the set are skipped, so an interrupted rescore continues where
it stopped. A call that still fails after the client's retries stops the rescore with the set
marked failed and the error stored; nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from rebase_cli.clients.reward import HttpReward
from rebase_cli.errors import RebaseError
from rebase_cli.store import score_sets
from rebase_cli.store.database import Database
from rebase_cli.store.models import NodeRow, ProblemRow
from rebase_cli.store.problems import problems_of_run
from rebase_cli.store.trees import load_tree


@dataclass
class RescoreOutcome:
    problems: int = 0
    scored: int = 0  # nodes scored by this invocation
    skipped: int = 0  # nodes already in the set


async def rescore_run(
    db: Database,
    run_id: int,
    score_set_id: int,
    reward: HttpReward,
    concurrency: int = 8,
    on_problem: Callable[[], None] = lambda: None,
) -> RescoreOutcome:
    """Score every node of `run_id` below the roots into the set (module docstring)."""
    problems = await asyncio.to_thread(problems_of_run, db, run_id)
    outcome = RescoreOutcome(problems=len(problems))
    gate = asyncio.Semaphore(concurrency)

    async def one(problem: ProblemRow) -> None:
        async with gate:
            await _rescore_problem(db, problem, score_set_id, reward, outcome)
        on_problem()

    try:
        await asyncio.gather(*(one(p) for p in problems))
    except Exception as exc:
        error = exc.one_line() if isinstance(exc, RebaseError) else repr(exc)
        await asyncio.to_thread(score_sets.set_status, db, score_set_id, "failed", error)
        raise
    await asyncio.to_thread(score_sets.set_status, db, score_set_id, "done")
    return outcome


async def _rescore_problem(
    db: Database,
    problem: ProblemRow,
    score_set_id: int,
    reward: HttpReward,
    outcome: RescoreOutcome,
) -> None:
    nodes = await asyncio.to_thread(load_tree, db, problem.id)
    done = await asyncio.to_thread(score_sets.scored_nodes, db, score_set_id, problem.id)
    by_id = {node.id: node for node in nodes}
    children: dict[int, list[NodeRow]] = {}
    for node in nodes:
        if node.depth > 0 and node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node)
    deepest = max((node.depth for node in nodes), default=0)
    for depth in range(1, deepest + 1):
        parents = [n for n in nodes if n.depth == depth - 1 and n.id in children]
        groups = []
        for parent in parents:
            todo = [c for c in children[parent.id] if c.id not in done]
            outcome.skipped += len(children[parent.id]) - len(todo)
            if todo:
                groups.append((parent, todo))
        if not groups:
            continue
        batches = await asyncio.gather(
            *(
                reward.score(problem.question, _steps(by_id, parent), [c.text for c in todo])
                for parent, todo in groups
            )
        )
        level = [
            (child.id, float(score))
            for (_, todo), batch in zip(groups, batches, strict=True)
            for child, score in zip(todo, batch.scores, strict=True)
        ]
        await asyncio.to_thread(score_sets.add_scores, db, score_set_id, level)
        outcome.scored += len(level)


def _steps(by_id: dict[int | None, NodeRow], node: NodeRow) -> list[str]:
    """The step texts from depth 1 down to `node` (none for the root)."""
    steps: list[str] = []
    current: NodeRow | None = node
    while current is not None and current.depth > 0:
        steps.append(current.text)
        current = by_id.get(current.parent_id)
    steps.reverse()
    return steps
