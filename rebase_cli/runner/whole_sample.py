"""Whole-solution sampling (`--method sample --sample-mode whole`), the classic baseline.

Each of the N paths is generated to its end in one policy request (the N samples of the root,
with no step-delimiter stop), split into steps at the template's delimiter, and then every step
is scored (`clients.path_reward`: one setwise /v1/score request per problem where the server
serves it). The tree stored is the one step-by-step `sample` would store for the same
continuations: a chain of step nodes per path, cut where step-by-step generation would have
stopped it (its first answer, EOS, the path token limit, the depth limit), with `sample`'s
allocation rows (each open node gives its one child, uniform share). Text generated past a cut
is dropped; its tokens are still counted, since they were generated. One difference remains: a
step longer than `max_step_tokens` stays one step here, where step-by-step generation would
have cut it and continued it as the next node.

All depths of a problem are committed in one transaction, so a kill before it loses (and a
resume redoes, with the same seed) the whole problem and never leaves half of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from rebase_cli.clients.policy import apportion
from rebase_cli.domain import (
    Completion,
    LevelCommit,
    LevelCounters,
    NewNode,
    ProblemRecord,
    StepBatch,
    TerminalReason,
)
from rebase_cli.prompts import PromptTemplate
from rebase_cli.runner.context import SearchContext
from rebase_cli.runner.seeds import request_seed
from rebase_cli.runner.steps import classify_step


@dataclass(frozen=True)
class PathStep:
    """One step of a generated path, classified as a step-by-step node would be."""

    text: str
    completion: Completion
    path_tokens: int
    terminal_reason: TerminalReason | None
    answer: str | None


async def expand_whole(
    ctx: SearchContext, problem: ProblemRecord, root_prompt: str, n: int
) -> list[LevelCommit]:
    """The levels 1..D of `n` whole paths from the root: one policy request, every step
    scored by `ctx.path_scorer`. Nothing is written; the caller commits the levels at once."""
    config, template = ctx.config, ctx.template
    seed = request_seed(config.seed, problem.dataset_index, 0, 0)  # the root's request seed
    batch = await ctx.policy.expand(
        root_prompt,
        n,
        stop=[s for s in template.stop if s != template.step_delimiter],
        max_new_tokens=config.max_tokens,  # the whole path in one request
        temperature=config.temperature,
        top_p=config.top_p,
        seed=seed,
    )
    paths = [
        split_completion(c, template, max_depth=config.max_depth, max_path_tokens=config.max_tokens)
        for c in batch.completions
    ]
    # The wrong-template check sees the steps as step-by-step generation would return them.
    steps = tuple(step.completion for path in paths for step in path)
    ctx.monitor.observe([replace(batch, completions=steps)], template)
    scorer = ctx.path_scorer
    if scorer is None:
        raise ValueError("whole-solution sampling needs the context's path scorer")
    scores, scored = await scorer.score_paths(
        problem.question, [[step.text for step in path] for path in paths]
    )
    counters = LevelCounters(
        policy_prompt_tokens=batch.prompt_tokens,
        policy_completion_tokens=batch.completion_tokens,
        reward_tokens=scored.tokens,
        policy_requests=batch.requests,
        reward_requests=scored.requests,
        retries=batch.retries + scored.retries,
    )
    return whole_levels(paths, scores, seed=seed, batch=batch, counters=counters)


def split_completion(
    completion: Completion,
    template: PromptTemplate,
    *,
    max_depth: int,
    max_path_tokens: int,
) -> list[PathStep]:
    """The steps of one whole completion, cut at the first one that ends the path.

    Every step but the last ends at the delimiter; the last one ends as the completion did,
    and always ends the path (a completion cut short by its token limit ends at the limit).
    The completion's tokens are split over the pieces by length (delimiter included)."""
    pieces = template.split_steps(completion.text) or [completion.text]
    delimiter = template.step_delimiter
    tokens = apportion(
        completion.completion_tokens, [len(piece) + len(delimiter) for piece in pieces]
    )
    steps: list[PathStep] = []
    path_tokens = 0
    for index, (piece, count) in enumerate(zip(pieces, tokens, strict=True)):
        last = index == len(pieces) - 1
        step = (
            Completion(piece, completion.finish_reason, completion.matched_stop, count)
            if last
            else Completion(piece, "stop", delimiter, count)
        )
        path_tokens += count
        reason, answer = classify_step(
            step,
            template,
            depth=index + 1,
            path_tokens=path_tokens,
            max_depth=max_depth,
            max_path_tokens=max_path_tokens,
        )
        if last and reason is None:
            # The one request ended here, so the path ends here too: at the request's token
            # limit (the path limit, unless the server counted fewer), or wherever it stopped.
            reason = (
                TerminalReason.MAX_TOKENS
                if step.finish_reason == "length"
                else (TerminalReason.EOS)
            )
        steps.append(PathStep(piece, step, path_tokens, reason, answer))
        if reason is not None:
            break
    return steps


def whole_levels(
    paths: Sequence[list[PathStep]],
    scores: Sequence[Sequence[float]],
    *,
    seed: int,
    batch: StepBatch,
    counters: LevelCounters,
) -> list[LevelCommit]:
    """The levels 1..D of the paths (each path's steps with their scores), in the order and
    with the allocation rows step-by-step `sample` would commit. `counters` go on level 1."""
    levels: list[LevelCommit] = []
    alive = list(range(len(paths)))  # path indices with a node at the previous depth
    previous: dict[int, int] = {}  # path index -> ordinal of its node at the previous depth
    depth = 1
    while alive:
        nodes, allocations, ordinals = [], [], {}
        share = 1.0 / len(alive)
        for path_index in alive:
            step = paths[path_index][depth - 1]
            ordinal = len(nodes)
            parent = previous.get(path_index, 0)
            if depth > 1:
                allocations.append((parent, share, 1))
            nodes.append(
                NewNode(
                    depth=depth,
                    ordinal=ordinal,
                    parent_ordinal=parent,
                    text=step.text,
                    score=float(scores[path_index][depth - 1]),
                    path_tokens=step.path_tokens,
                    # The one request's prompt tokens are counted once, on the first node.
                    prompt_tokens=batch.prompt_tokens if depth == 1 and ordinal == 0 else 0,
                    completion_tokens=step.completion.completion_tokens,
                    finish_reason=step.completion.finish_reason,
                    terminal_reason=step.terminal_reason,
                    answer=step.answer,
                    # A seed the server was not sent (or ignores) is not recorded.
                    seed=seed if batch.seeded else None,
                )
            )
            ordinals[path_index] = ordinal
        if depth == 1:
            allocations = [(0, 1.0, len(nodes))]
        levels.append(
            LevelCommit(
                depth=depth,
                nodes=tuple(nodes),
                allocations=tuple(allocations),
                counters=counters if depth == 1 else LevelCounters(),
            )
        )
        previous = ordinals
        alive = [i for i in alive if len(paths[i]) > depth]
        depth += 1
    return levels
