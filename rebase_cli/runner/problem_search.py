"""The level loop of one problem: decide, expand, score, commit; resumable at any level.

Invariant: the in-memory tree always equals the committed tree. A level is built entirely in
memory and written by one `SearchStore.commit_levels` transaction; if anything fails or is
cancelled before that commit, nothing of the level exists and a resume redoes it with the same
seeds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from rebase_cli.clients import affinity
from rebase_cli.clients.policy import StepRequest
from rebase_cli.domain import (
    LevelCommit,
    LevelCounters,
    LevelDecision,
    NewNode,
    NodeSnapshot,
    ProblemRecord,
    ScoreBatch,
    StepBatch,
)
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.context import SearchContext
from rebase_cli.runner.seeds import request_seed
from rebase_cli.runner.steps import classify_step
from rebase_cli.runner.whole_sample import expand_whole


@dataclass
class TreeNode:
    """A committed node as the loop needs it; `prompt` is the policy prompt of its children."""

    depth: int
    ordinal: int
    parent: TreeNode | None
    text: str
    score: float
    path_tokens: int
    terminal: bool
    prompt: str
    step_tokens: int = 0
    children: list[TreeNode] = field(default_factory=list)

    def steps(self) -> list[str]:
        """The step texts from depth 1 down to this node."""
        out: list[str] = []
        node: TreeNode | None = self
        while node is not None and node.depth > 0:
            out.append(node.text)
            node = node.parent
        return out[::-1]

    def lineage(self) -> int | None:
        """The ordinal of this node's depth-1 ancestor (None for the root)."""
        node = self
        while node.parent is not None and node.depth > 1:
            node = node.parent
        return node.ordinal if node.depth >= 1 else None

    def counted_tokens(self, rule: str) -> int:
        """The tokens the over-length test counts: the whole path's ("path") or, as in the
        authors' code, where a node's count never adds its parent's, its own step's ("step")."""
        return self.step_tokens if rule == "step" else self.path_tokens

    def snapshot(self, rule: str = "path") -> NodeSnapshot:
        # Ordinals are assigned in a deterministic order, so they serve as the tie-break key.
        return NodeSnapshot(
            key=self.ordinal,
            depth=self.depth,
            score=self.score,
            terminal=self.terminal,
            path_tokens=self.counted_tokens(rule),
            lineage=self.lineage(),
        )


@dataclass
class ProblemTree:
    """The nodes of one problem by depth; every node's prompt is its parent's extended by the
    node's step (the root's is the rendered question)."""

    template: PromptTemplate
    root_prompt: str
    levels: list[list[TreeNode]] = field(default_factory=list)

    def add(self, record: NewNode, parent: TreeNode | None) -> TreeNode:
        """Append a committed node (loaded from the store, or of a level just committed)."""
        prompt = (
            self.root_prompt if parent is None else self.template.extend(parent.prompt, record.text)
        )
        node = TreeNode(
            depth=record.depth,
            ordinal=record.ordinal,
            parent=parent,
            text=record.text,
            score=record.score,
            path_tokens=record.path_tokens,
            terminal=record.terminal,
            prompt=prompt,
            step_tokens=record.completion_tokens if parent is not None else 0,
        )
        if parent is not None:
            parent.children.append(node)
        self.ensure_depth(record.depth)
        self.levels[record.depth].append(node)
        return node

    def ensure_depth(self, depth: int) -> None:
        while len(self.levels) <= depth:
            self.levels.append([])

    @property
    def depth_completed(self) -> int:
        return len(self.levels) - 1

    def finished_before(self, depth: int, max_path_tokens: int, rule: str = "path") -> int:
        """Nodes at depths < `depth` that were terminal or over the token limit (counted by
        the path-token `rule`)."""
        return sum(
            1
            for level in self.levels[:depth]
            for node in level
            if node.terminal or node.counted_tokens(rule) >= max_path_tokens
        )


def rebuild_tree(nodes: Sequence[NewNode], template: PromptTemplate, question: str) -> ProblemTree:
    """The in-memory tree of committed nodes ordered by (depth, ordinal)."""
    tree = ProblemTree(template, template.render(question))
    by_position: dict[tuple[int, int], TreeNode] = {}
    for node in nodes:
        parent = None
        if node.parent_ordinal is not None:
            parent = by_position[(node.depth - 1, node.parent_ordinal)]
        by_position[(node.depth, node.ordinal)] = tree.add(node, parent)
    return tree


def level_counters(batches: Sequence[StepBatch], scores: Sequence[ScoreBatch]) -> LevelCounters:
    """The usage a level adds to its problem's counters."""
    return LevelCounters(
        policy_prompt_tokens=sum(b.prompt_tokens for b in batches),
        policy_completion_tokens=sum(b.completion_tokens for b in batches),
        reward_tokens=sum(s.tokens for s in scores),
        policy_requests=sum(b.requests for b in batches),
        reward_requests=sum(s.requests for s in scores),
        retries=sum(b.retries for b in batches) + sum(s.retries for s in scores),
    )


class ProblemSearch:
    """Runs (or resumes) the search of one problem to completion."""

    def __init__(self, ctx: SearchContext, problem: ProblemRecord) -> None:
        self.ctx = ctx
        self.problem = problem
        self.template = ctx.template

    async def run(self) -> None:
        # Every request of this problem carries its id, so a pool of servers keeps the problem
        # on one server (its prefix cache) while that server lives.
        with affinity.bound_to(self.problem.id):
            await self._run()

    async def _run(self) -> None:
        ctx, problem = self.ctx, self.problem
        started = time.monotonic()
        nodes = await asyncio.to_thread(ctx.store.start_problem, problem.id)
        tree = rebuild_tree(nodes, self.template, problem.question)
        if not tree.levels:
            await self._commit(tree, [self._root_level()], started)
            started = time.monotonic()
        while True:
            depth = tree.depth_completed
            frontier = tree.levels[depth]
            rule = ctx.config.path_token_rule
            decision = ctx.strategy.decide(
                [node.snapshot(rule) for node in frontier],
                tree.finished_before(depth, ctx.config.max_tokens, rule),
                depth,
                problem_index=problem.dataset_index,
            )
            if decision.stop or decision.total_children == 0:
                await asyncio.to_thread(
                    ctx.store.finish_problem, problem.id, time.monotonic() - started
                )
                return
            if depth == 0 and ctx.config.whole_solutions:
                levels = await expand_whole(
                    ctx, problem, frontier[0].prompt, decision.total_children
                )
            else:
                levels = [await self._expand(frontier, decision)]
            await self._commit(tree, levels, started)
            started = time.monotonic()

    def _root_level(self) -> LevelCommit:
        root = NewNode(depth=0, ordinal=0, parent_ordinal=None, text="", score=1.0, path_tokens=0)
        return LevelCommit(depth=0, nodes=(root,))

    async def _expand(self, frontier: list[TreeNode], decision: LevelDecision) -> LevelCommit:
        ctx = self.ctx
        by_key = {node.ordinal: node for node in frontier}
        # Children are created parent by parent: in parent creation order, or (the authors'
        # code) in the decision's best-first order.
        expansions = list(decision.expansions)
        if ctx.config.child_order != "best-first":
            expansions.sort(key=lambda e: e.key)
        parents = [(by_key[e.key], e.children) for e in expansions if e.children > 0]
        # The level costs one reward request, and on SGLang's native batch one policy request:
        # requests, not tokens, are what the orchestrator's CPU goes on.
        steps = [self._step_request(parent, n) for parent, n in parents]
        batches = await ctx.policy.expand_level(steps, depth=frontier[0].depth)
        # The wrong-template check sees the level's batches in parent order, as one level.
        ctx.monitor.observe(batches, self.template)
        groups = [
            (parent.steps(), [c.text for c in batch.completions])
            for (parent, _), batch in zip(parents, batches, strict=True)
        ]
        scored = await ctx.reward.score_level(self.problem.question, groups)
        return self._build_level(frontier[0].depth + 1, parents, steps, batches, scored, decision)

    def _step_request(self, node: TreeNode, n: int) -> StepRequest:
        config = self.ctx.config
        seed = request_seed(config.seed, self.problem.dataset_index, node.depth, node.ordinal)
        max_new_tokens = config.max_step_tokens
        if config.path_token_rule == "path":  # the request may use only what the path has left
            max_new_tokens = min(max_new_tokens, max(1, config.max_tokens - node.path_tokens))
        return StepRequest(
            node.prompt,
            n,
            stop=tuple(self.template.stops_for(node.depth)),
            max_new_tokens=max_new_tokens,
            temperature=config.temperature,
            top_p=config.top_p,
            seed=seed,
        )

    def _build_level(
        self,
        depth: int,
        parents: list[tuple[TreeNode, int]],
        steps: list[StepRequest],
        batches: list[StepBatch],
        scored: ScoreBatch,
        decision: LevelDecision,
    ) -> LevelCommit:
        """The level's nodes in deterministic order: parents in `parents` order (see
        `_expand`), then sample index; `steps` are the parents' requests (their seeds).
        `scored` holds the scores in that same order."""
        config = self.ctx.config
        nodes: list[NewNode] = []
        if len(scored.scores) != sum(len(batch.completions) for batch in batches):
            raise ValueError("the level's scores do not match its steps")
        scores = iter(scored.scores)
        for (parent, _), step, batch in zip(parents, steps, batches, strict=True):
            for index, completion in enumerate(batch.completions):
                score = next(scores)
                path_tokens = parent.path_tokens + completion.completion_tokens
                counted = path_tokens
                if config.path_token_rule == "step":
                    counted = completion.completion_tokens
                reason, answer = classify_step(
                    completion,
                    self.template,
                    depth=depth,
                    path_tokens=counted,
                    max_depth=config.max_depth,
                    max_path_tokens=config.max_tokens,
                    leaf_rule=config.leaf_rule,
                )
                nodes.append(
                    NewNode(
                        depth=depth,
                        ordinal=len(nodes),
                        parent_ordinal=parent.ordinal,
                        text=completion.text,
                        score=float(score),
                        path_tokens=path_tokens,
                        # The request's prompt tokens are counted once, on its first child.
                        prompt_tokens=batch.prompt_tokens if index == 0 else 0,
                        completion_tokens=completion.completion_tokens,
                        finish_reason=completion.finish_reason,
                        terminal_reason=reason,
                        answer=answer,
                        # A seed the server was not sent (or ignores) is not recorded.
                        seed=step.seed if batch.seeded else None,
                    )
                )
        return LevelCommit(
            depth=depth,
            nodes=tuple(nodes),
            allocations=tuple(
                (e.key, float(e.weight), int(e.children), e.subtree) for e in decision.expansions
            ),
            counters=level_counters(batches, [scored]),
        )

    async def _commit(self, tree: ProblemTree, levels: list[LevelCommit], started: float) -> None:
        """Commit consecutive levels in one transaction, then add them to the in-memory tree."""
        await asyncio.to_thread(
            self.ctx.store.commit_levels, self.problem.id, levels, time.monotonic() - started
        )
        for level in levels:
            parents = tree.levels[level.depth - 1] if level.depth > 0 else []
            by_ordinal = {node.ordinal: node for node in parents}
            tree.ensure_depth(level.depth)
            for new in level.nodes:
                parent = (
                    by_ordinal.get(new.parent_ordinal) if new.parent_ordinal is not None else None
                )
                tree.add(new, parent)
            self.ctx.events.level_committed(self.problem, level)
