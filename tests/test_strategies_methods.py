"""Property tests of DVTS and particle filtering: pure functions over snapshots.

A whole search is played out in memory the way the runner plays it (decide, make the children,
next depth), over a seeded random "world" that gives each child a score and sometimes ends its
path; the properties are checked on every level and on the finished tree.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.domain import NodeSnapshot
from rebase_cli.search import get_strategy
from rebase_cli.search.dvts import allocate_dvts, subtree_sizes
from rebase_cli.search.frontier import is_finished
from rebase_cli.search.particle import multinomial_counts, resampling_seed

MAX_TOKENS = 1024


@dataclass(frozen=True)
class Played:
    """A finished in-memory search: nodes by depth, each decision, children per parent key."""

    levels: list[list[NodeSnapshot]]
    decisions: list
    parents: dict[tuple[int, int], tuple[int, int]]


def play(method: str, params: dict, *, world_seed: int, problem_index: int = 0) -> Played:
    """Run `method` to the end over a random world; children of one parent come in sample
    order, parents in key order, exactly like the runner's `_build_level`."""
    strategy = get_strategy(method, params)
    world = random.Random(world_seed)
    max_depth = params.get("max_depth", 25)
    levels = [[NodeSnapshot(key=0, depth=0, score=1.0, terminal=False, path_tokens=0)]]
    decisions, parents = [], {}
    finished = 0
    while True:
        depth = len(levels) - 1
        frontier = levels[depth]
        decision = strategy.decide(frontier, finished, depth, problem_index=problem_index)
        decisions.append(decision)
        finished += sum(1 for node in frontier if is_finished(node, MAX_TOKENS))
        if decision.stop or decision.total_children == 0:
            return Played(levels, decisions, parents)
        by_key = {node.key: node for node in frontier}
        children: list[NodeSnapshot] = []
        for expansion in sorted(decision.expansions, key=lambda e: e.key):
            parent = by_key[expansion.key]
            for _ in range(expansion.children):
                key = len(children)
                child_depth = depth + 1
                children.append(
                    NodeSnapshot(
                        key=key,
                        depth=child_depth,
                        score=world.choice([0.1, 0.5, 0.5, 0.9, world.random()]),
                        terminal=world.random() < 0.25 or child_depth >= max_depth,
                        path_tokens=parent.path_tokens + world.randint(1, 80),
                        lineage=key if child_depth == 1 else parent.lineage,
                    )
                )
                parents[(child_depth, key)] = (depth, parent.key)
        levels.append(children)


def finished_nodes(played: Played) -> list[NodeSnapshot]:
    return [n for level in played.levels for n in level if is_finished(n, MAX_TOKENS)]


widths = st.integers(1, 40)
expansions = st.integers(1, 8)
world_seeds = st.integers(0, 2**20)


# ----------------------------------------------------------------------------------- DVTS


@settings(max_examples=150, deadline=None)
@given(width=widths, expansion=expansions, world_seed=world_seeds, max_depth=st.integers(1, 12))
def test_dvts_every_subtree_ends_with_its_share_of_finished_paths(
    width: int, expansion: int, world_seed: int, max_depth: int
) -> None:
    params = {"width": width, "beam_expansion": expansion, "max_depth": max_depth}
    played = play("dvts", params, world_seed=world_seed)
    done = finished_nodes(played)
    assert len(done) == width  # the budget, exactly
    per_subtree = Counter(node.lineage // expansion for node in done)
    assert [per_subtree[s] for s in range(len(per_subtree))] == subtree_sizes(width, expansion)


@settings(max_examples=150, deadline=None)
@given(width=widths, expansion=expansions, world_seed=world_seeds)
def test_dvts_keeps_one_node_per_subtree_and_gives_it_the_subtree_width(
    width: int, expansion: int, world_seed: int
) -> None:
    played = play("dvts", {"width": width, "beam_expansion": expansion}, world_seed=world_seed)
    for depth, (frontier, decision) in enumerate(zip(played.levels, played.decisions, strict=True)):
        open_nodes = [n for n in frontier if not is_finished(n, MAX_TOKENS)]
        assert decision.total_children == (0 if decision.stop else decision.remaining_width)
        if depth == 0 or decision.stop:
            continue
        kept = [e for e in decision.expansions if e.children > 0]
        by_key = {n.key: n for n in open_nodes}
        # One kept node per subtree that still has open nodes, and it is that subtree's best.
        subtrees = {n.lineage // expansion for n in open_nodes}
        assert sorted(e.subtree for e in kept) == sorted(subtrees)
        for expansion_row in kept:
            members = [n for n in open_nodes if n.lineage // expansion == expansion_row.subtree]
            best = min(members, key=lambda n: (-n.score, n.key))
            assert expansion_row.key == best.key
            assert expansion_row.children == len(members)
            assert by_key[expansion_row.key].lineage // expansion == expansion_row.subtree
        # Subtrees never compete: every child descends from its own subtree's kept node.
        for (child_depth, _), (parent_depth, parent_key) in played.parents.items():
            if parent_depth == depth:
                assert parent_key in {e.key for e in kept}
            assert child_depth == parent_depth + 1


def test_dvts_with_expansion_one_is_independent_sampling() -> None:
    dvts = play("dvts", {"width": 6, "beam_expansion": 1}, world_seed=3)
    sample = play("sample", {"width": 6}, world_seed=3)
    assert dvts.levels == sample.levels


def test_dvts_refuses_a_frontier_it_did_not_make() -> None:
    nodes = [
        NodeSnapshot(key=k, depth=2, score=0.5, terminal=False, path_tokens=5, lineage=0)
        for k in range(3)
    ]
    with pytest.raises(ValueError, match="not a DVTS level"):
        allocate_dvts(nodes, width=8, expansion=4, max_path_tokens=MAX_TOKENS, depth=2)


# ------------------------------------------------------------------------ particle filtering


@settings(max_examples=150, deadline=None)
@given(
    width=widths,
    world_seed=world_seeds,
    seed=st.integers(0, 2**31 - 1),
    temperature=st.sampled_from([0.05, 0.2, 1.0, 10.0]),
)
def test_particles_resample_the_width_left_and_finish_exactly_the_budget(
    width: int, world_seed: int, seed: int, temperature: float
) -> None:
    params = {"width": width, "seed": seed, "particle_temperature": temperature}
    played = play("particle", params, world_seed=world_seed, problem_index=5)
    assert len(finished_nodes(played)) == width
    for depth, (frontier, decision) in enumerate(zip(played.levels, played.decisions, strict=True)):
        open_keys = {n.key for n in frontier if not is_finished(n, MAX_TOKENS)}
        assert {e.key for e in decision.expansions} == open_keys  # finished keep their slot
        if decision.stop:
            continue
        assert decision.total_children == decision.remaining_width
        assert all(e.children >= 0 for e in decision.expansions)
        assert sum(e.weight for e in decision.expansions) == pytest.approx(1.0)
        if depth > 0:
            # The weights are softmax(score / T) over the open particles.
            scores = {n.key: n.score for n in frontier}
            top = max(e.weight for e in decision.expansions)
            best = max(scores[e.key] for e in decision.expansions)
            for e in decision.expansions:
                expected = pow(2.718281828459045, (scores[e.key] - best) / temperature)
                assert e.weight / top == pytest.approx(expected, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(width=widths, world_seed=world_seeds, seed=st.integers(0, 2**31 - 1))
def test_particles_are_deterministic_for_a_seed_and_problem(
    width: int, world_seed: int, seed: int
) -> None:
    params = {"width": width, "seed": seed}
    first = play("particle", params, world_seed=world_seed, problem_index=3)
    again = play("particle", params, world_seed=world_seed, problem_index=3)
    assert first == again


def test_particle_draws_depend_on_the_run_seed_problem_and_depth() -> None:
    seeds = {
        resampling_seed(run, problem, depth)
        for run in range(3)
        for problem in range(3)
        for depth in range(3)
    }
    assert len(seeds) == 27
    frontier = [
        NodeSnapshot(key=k, depth=1, score=0.5, terminal=False, path_tokens=3, lineage=k)
        for k in range(16)
    ]
    draws = {
        tuple(e.children for e in get_strategy("particle", {"width": 16, "seed": s})
              .decide(frontier, 0, 1).expansions)
        for s in range(5)
    }  # fmt: skip
    assert len(draws) > 1  # equal scores: only the seed decides, and it does


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(2, 24),
    seed=st.integers(0, 2**31 - 1),
    order_seed=st.integers(0, 1000),
)
def test_a_decision_does_not_depend_on_the_frontier_order(
    width: int, seed: int, order_seed: int
) -> None:
    world = random.Random(order_seed)
    frontier = [
        NodeSnapshot(
            key=k,
            depth=1,
            score=world.choice([0.2, 0.5, 0.8]),
            terminal=world.random() < 0.2,
            path_tokens=10,
            lineage=k,
        )
        for k in range(width)
    ]
    shuffled = frontier[:]
    world.shuffle(shuffled)
    for method in ("particle", "dvts"):
        strategy = get_strategy(method, {"width": width, "seed": seed, "beam_expansion": 3})
        a = sorted(strategy.decide(frontier, 0, 1, problem_index=1).expansions, key=str)
        b = sorted(strategy.decide(shuffled, 0, 1, problem_index=1).expansions, key=str)
        assert a == b


def test_multinomial_counts_follow_the_weights() -> None:
    weights = [1.0, 0.5, 0.25, 0.0, 0.25]
    counts = multinomial_counts(weights, 40_000, seed=11)
    assert sum(counts) == 40_000
    assert counts[3] == 0  # a zero weight is never drawn
    for count, weight in zip(counts, weights, strict=True):
        assert count / 40_000 == pytest.approx(weight / 2.0, abs=0.01)


def test_particle_filtering_stops_at_the_depth_limit_with_the_width_accounted() -> None:
    played = play("particle", {"width": 8, "max_depth": 2}, world_seed=1)
    assert len(played.levels) <= 3
    assert played.decisions[-1].stop or played.decisions[-1].total_children == 0


def test_snapshots_without_lineage_are_refused_by_dvts() -> None:
    node = NodeSnapshot(key=0, depth=1, score=0.5, terminal=False, path_tokens=1)
    with pytest.raises(ValueError, match="no lineage"):
        allocate_dvts([node], width=1, expansion=1, max_path_tokens=MAX_TOKENS, depth=1)
