"""Builders for report tests: small runs with known trees, written through the store
(`create_run`, `add_problems`, `commit_level`) exactly as a search would write them.

A tree is written as nested `node(score, *children, answer=..., reason=..., pruned=...)`;
children get ordinals in breadth-first order within their depth, and every open node that has
children (or is marked pruned) gets an allocation row when the next level is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rebase_cli.domain import LevelCommit, LevelCounters, NewNode, Problem, TerminalReason
from rebase_cli.store import problems
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run
from rebase_cli.store.problems import add_problems
from rebase_cli.store.runs import create_run
from rebase_cli.store.trees import load_tree
from tests.store_helpers import commit_level, get_problem, load_allocations


@dataclass(frozen=True)
class N:
    score: float
    children: tuple[N, ...] = ()
    answer: str | None = None
    reason: TerminalReason | None = None
    pruned: bool = False
    text: str | None = None

    @property
    def terminal(self) -> bool:
        return self.reason is not None


def node(
    score: float,
    *children: N,
    answer: str | None = None,
    reason: TerminalReason | None = None,
    pruned: bool = False,
    text: str | None = None,
) -> N:
    """A tree node; a node with an answer is terminal (reason `answer`) unless told otherwise."""
    if answer is not None and reason is None:
        reason = TerminalReason.ANSWER
    return N(score, tuple(children), answer, reason, pruned, text)


def default_counters(depth: int) -> LevelCounters:
    """Level 1 costs (100, 40, 20 tokens; 1, 1 requests); deeper levels (200, 60, 30; 2, 2)
    plus one retry."""
    if depth == 1:
        return LevelCounters(100, 40, 20, 1, 1, 0)
    return LevelCounters(200, 60, 30, 2, 2, 1)


def make_run(
    db: Database,
    *,
    method: str = "rebase",
    budget: int = 4,
    status: str = "done",
    simulated: bool = False,
    dataset: str = "gsm8k",
    policy_model: str | None = "Qwen/Qwen2.5-Math-7B-Instruct",
    reward_model: str | None = "peiyi9979/math-shepherd-mistral-7b-prm",
    config: dict | None = None,
    name: str | None = None,
    seed: int = 0,
    wall_seconds: float = 12.5,
) -> Run:
    return create_run(
        db,
        Run(
            name=name,
            method=method,
            dataset=dataset,
            dataset_sha256="0" * 64,
            budget=budget,
            config_json=json.dumps(config or {"method": method, "budget": budget}),
            fingerprint="fp",
            policy_model=policy_model,
            reward_model=reward_model,
            simulated=simulated,
            seed=seed,
            status=status,
            wall_seconds=wall_seconds,
        ),
    )


@dataclass
class _Placed:
    spec: N
    ordinal: int
    parent_ordinal: int | None
    depth: int
    children: list[_Placed] = field(default_factory=list)


def add_tree(
    db: Database,
    run: Run,
    index: int,
    reference: str,
    children: Sequence[N],
    *,
    subject: str | None = None,
    level: int | None = None,
    error: str | None = None,
    finish: bool = True,
    question: str | None = None,
    counters: Callable[[int], LevelCounters] = default_counters,
    elapsed: float = 1.0,
) -> int:
    """Write problem `index` with the tree whose root has `children`; returns the problem id.

    Every level is committed in order; the last one finishes the problem (failed when `error`
    is given) unless `finish` is False."""
    add_problems(
        db,
        run.id,
        [
            Problem(
                index,
                f"src-{index}",
                question or f"Question {index}?",
                reference,
                subject=subject,
                level=level,
            )
        ],
    )
    problem_id = get_problem(db, run.id, index).id
    levels: list[list[_Placed]] = [[_Placed(N(1.0, tuple(children)), 0, None, 0)]]
    while True:
        ordinal, nxt = 0, []
        for parent in levels[-1]:
            for child in parent.spec.children:
                placed = _Placed(child, ordinal, parent.ordinal, parent.depth + 1)
                parent.children.append(placed)
                nxt.append(placed)
                ordinal += 1
        if not nxt:
            break
        levels.append(nxt)
    last = len(levels) - 1
    for depth, placed_nodes in enumerate(levels):
        allocations = ()
        if depth > 0:
            parents = [
                p
                for p in levels[depth - 1]
                if not p.spec.terminal and (p.children or p.spec.pruned)
            ]
            allocations = tuple((p.ordinal, 1.0 / len(parents), len(p.children)) for p in parents)
        nodes = tuple(
            NewNode(
                depth=p.depth,
                ordinal=p.ordinal,
                parent_ordinal=p.parent_ordinal,
                text="" if depth == 0 else (p.spec.text or f"Step {depth}: node {p.ordinal}"),
                score=p.spec.score,
                path_tokens=10 * depth,
                terminal_reason=p.spec.reason,
                answer=p.spec.answer,
            )
            for p in placed_nodes
        )
        commit_level(
            db,
            problem_id,
            LevelCommit(
                depth=depth,
                nodes=nodes,
                allocations=allocations,
                counters=counters(depth) if depth > 0 else LevelCounters(),
            ),
            elapsed=elapsed if depth == last else 0.0,
        )
    if finish:
        with db.driver_write() as cursor:
            if error:
                problems.mark_failed(cursor, problem_id, error)
            else:
                problems.mark_done(cursor, problem_id)
    return problem_id


def test_builder_writes_levels_allocations_and_counters(db: Database) -> None:
    run = make_run(db)
    pid = add_tree(
        db,
        run,
        0,
        "1",
        [node(0.9, node(0.8, answer="1")), node(0.2, pruned=True)],
    )
    nodes = load_tree(db, pid)
    assert [(n.depth, n.ordinal, n.score) for n in nodes] == [
        (0, 0, 1.0),
        (1, 0, 0.9),
        (1, 1, 0.2),
        (2, 0, 0.8),
    ]
    assert nodes[3].parent_id == nodes[1].id and nodes[3].answer == "1" and nodes[3].terminal
    children = sorted(a.children for a in load_allocations(db, pid))
    assert children == [0, 1, 2]  # root → 2, first child → 1, pruned → 0
    problem = get_problem(db, run.id, 0)
    assert problem.status == "done"
    assert (problem.policy_prompt_tokens, problem.retries) == (300, 1)
