"""The strategies behind `--method`: registry, sample, beam, and whole searches played out on
synthetic trees to check the budget invariants across depths."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.domain import NodeSnapshot
from rebase_cli.errors import ConfigError
from rebase_cli.search import (
    StrategyParams,
    allocate_beam,
    allocate_sample,
    count_finished,
    get_strategy,
)


def node(key, score=0.5, *, depth=1, terminal=False, tokens=0):
    return NodeSnapshot(key=key, depth=depth, score=score, terminal=terminal, path_tokens=tokens)


def root():
    return NodeSnapshot(key=0, depth=0, score=1.0, terminal=False, path_tokens=0)


def children(decision):
    return {e.key: e.children for e in decision.expansions}


# --- registry ----------------------------------------------------------------------------------


def test_registry_builds_each_method_from_a_mapping():
    for name in ("rebase", "sample", "beam"):
        strategy = get_strategy(name, {"width": 8, "balance_temperature": 0.5})
        assert strategy.name == name
        assert strategy.params == StrategyParams(width=8, balance_temperature=0.5)


def test_registry_rejects_unknown_methods_and_parameters_with_config_errors():
    # Values are checked by SearchConfig, once (tests/test_search_config.py); the registry
    # refuses only what it cannot build.
    with pytest.raises(ConfigError, match="unknown search method 'mcts'") as info:
        get_strategy("mcts", {"width": 4})
    assert "beam, dvts, particle, rebase, sample" in info.value.one_line()
    with pytest.raises(ConfigError, match="unknown search parameter"):
        get_strategy("rebase", {"width": 4, "softmax_temp": 1})


def test_every_method_has_a_strategy():
    from rebase_cli.params import Method
    from rebase_cli.search import STRATEGIES

    assert set(STRATEGIES) == set(Method)
    assert all(get_strategy(m, {"width": 4}).name == m for m in Method)


# --- rebase through the protocol ------------------------------------------------------------------


def test_rebase_root_gets_the_whole_budget():
    decision = get_strategy("rebase", {"width": 16}).decide([root()], 0, 0)
    assert children(decision) == {0: 16} and decision.remaining_width == 16


def test_rebase_subtracts_paths_finished_at_earlier_depths():
    strategy = get_strategy("rebase", {"width": 16})
    frontier = [node(1, 0.9), node(2, 0.9), node(3, 0.2, terminal=True)]
    decision = strategy.decide(frontier, finished_so_far=5, depth=2)
    assert decision.remaining_width == 10
    assert children(decision) == {1: 5, 2: 5}


def test_every_strategy_stops_at_the_depth_limit():
    frontier = [node(1, 0.9, depth=3), node(2, 0.2, depth=3, terminal=True)]
    for name in ("rebase", "sample", "beam"):
        decision = get_strategy(name, {"width": 4, "max_depth": 3}).decide(frontier, 0, 3)
        assert decision.stop and children(decision) == {1: 0}
        assert decision.remaining_width == 3


# --- sample --------------------------------------------------------------------------------------


def test_sample_gives_the_root_n_children_then_one_per_open_path():
    assert children(allocate_sample([root()], width=8, max_path_tokens=100, depth=0)) == {0: 8}
    frontier = [node(k, score=k / 10) for k in range(1, 7)] + [
        node(7, terminal=True),
        node(8, tokens=100),
    ]
    decision = allocate_sample(frontier, width=8, max_path_tokens=100, depth=1)
    assert children(decision) == {k: 1 for k in range(1, 7)}
    assert decision.remaining_width == 6
    assert [e.weight for e in decision.expansions] == pytest.approx([1 / 6] * 6)


# --- beam ----------------------------------------------------------------------------------------


def test_beam_keeps_the_best_n_over_m_and_expands_each_m_ways():
    frontier = [node(k, score=s) for k, s in enumerate([0.1, 0.9, 0.5, 0.7, 0.3, 0.8], 1)]
    decision = allocate_beam(frontier, width=6, expansion=2, max_path_tokens=100, depth=1)
    # ceil(6 / 2) = 3 kept: keys 2 (0.9), 6 (0.8), 4 (0.7)
    assert children(decision) == {2: 2, 6: 2, 4: 2, 3: 0, 5: 0, 1: 0}
    assert [e.key for e in decision.expansions] == [2, 6, 4, 3, 5, 1]
    assert [e.weight for e in decision.expansions[:3]] == pytest.approx([1 / 3] * 3)


def test_beam_shrinks_as_paths_finish_and_never_exceeds_the_width():
    frontier = [node(k, score=1 - k / 10) for k in range(1, 9)]
    frontier += [node(20, terminal=True), node(21, terminal=True), node(22, terminal=True)]
    decision = allocate_beam(frontier, width=11, expansion=4, max_path_tokens=100, depth=2)
    # W = 11 - 3 = 8 -> ceil(8 / 4) = 2 nodes, 4 each
    assert [c for c in children(decision).values() if c] == [4, 4]
    decision = allocate_beam(frontier[:8], width=6, expansion=4, max_path_tokens=100, depth=2)
    assert [e.children for e in decision.expansions[:3]] == [4, 2, 0]


@settings(max_examples=300, deadline=None)
@given(
    nodes=st.lists(
        st.tuples(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), st.booleans(), st.integers(0, 150)),
        min_size=1,
        max_size=30,
    ),
    width=st.integers(1, 64),
    expansion=st.integers(1, 8),
    depth=st.integers(1, 6),
)
def test_beam_keeps_the_best_open_nodes_and_spends_exactly_what_it_may(
    nodes, width, expansion, depth
):
    """Beam at depth > 0, for any frontier: finished nodes (terminal or over the path tokens)
    take width; ceil(W_left / M) open nodes are kept (fewer if fewer are open), each with M
    children except the last kept one; no pruned open node ranks above a kept one (score,
    then key); weights are uniform over the kept nodes."""
    max_tokens = 100
    frontier = [
        node(key, score, depth=depth, terminal=terminal, tokens=tokens)
        for key, (score, terminal, tokens) in enumerate(nodes, 1)
    ]
    decision = allocate_beam(
        frontier, width=width, expansion=expansion, max_path_tokens=max_tokens, depth=depth
    )
    open_nodes = [n for n in frontier if not n.terminal and n.path_tokens < max_tokens]
    left = width - (len(frontier) - len(open_nodes))
    given_children = children(decision)
    assert set(given_children) == {n.key for n in open_nodes}
    if left <= 0 or not open_nodes:
        assert decision.stop and decision.total_children == 0
        return
    assert not decision.stop and decision.remaining_width == left
    kept = [n for n in open_nodes if given_children[n.key] > 0]
    pruned = [n for n in open_nodes if given_children[n.key] == 0]
    assert len(kept) == min(len(open_nodes), math.ceil(left / expansion))
    assert decision.total_children == min(left, expansion * len(open_nodes))
    rank = {n.key: (-n.score, n.key) for n in open_nodes}
    assert all(rank[k.key] < rank[p.key] for k in kept for p in pruned)
    counts = sorted((given_children[n.key] for n in kept), reverse=True)
    assert all(c == expansion for c in counts[:-1]) and 1 <= counts[-1] <= expansion
    for e in decision.expansions:
        assert e.weight == pytest.approx(1 / len(kept) if e.children else 0.0)


def test_beam_root_gets_the_whole_width():
    assert children(allocate_beam([root()], width=9, expansion=3, max_path_tokens=9, depth=0)) == {
        0: 9
    }


# --- whole searches on synthetic trees ----------------------------------------------------------


def play(name, budget, seed, *, max_depth=12, terminal_rate=0.3, expansion=4):
    """Run a strategy to the end on a random tree; return per-depth (decision, frontier,
    finished before that depth) and the number of finished paths. Children get random scores
    and finish at random."""
    rng = random.Random(seed)
    params = {"width": budget, "max_depth": max_depth, "beam_expansion": expansion}
    params["max_path_tokens"] = 400
    strategy = get_strategy(name, params)
    frontier, finished_so_far, next_key, history = [root()], 0, 1, []
    for depth in range(max_depth + 1):
        decision = strategy.decide(frontier, finished_so_far, depth)
        history.append((decision, frontier, finished_so_far))
        finished_so_far += count_finished(frontier, 400)
        if decision.stop:
            break
        by_key = {n.key: n for n in frontier}
        new = []
        for expansion in decision.expansions:
            for _ in range(expansion.children):
                tokens = by_key[expansion.key].path_tokens + rng.randint(5, 60)
                new.append(
                    NodeSnapshot(
                        key=next_key,
                        depth=depth + 1,
                        score=rng.random(),
                        terminal=rng.random() < terminal_rate,
                        path_tokens=tokens,
                    )
                )
                next_key += 1
        frontier = new
    return history, finished_so_far


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["rebase", "sample", "beam"]),
    budget=st.integers(1, 64),
    seed=st.integers(0, 2**32),
    terminal_rate=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_a_whole_search_never_finishes_more_paths_than_the_budget(
    name, budget, seed, terminal_rate
):
    history, finished = play(name, budget, seed, terminal_rate=terminal_rate)
    assert finished <= budget
    assert history[-1][0].stop
    for depth, (decision, frontier, finished_before) in enumerate(history):
        total = decision.total_children
        assert all(e.children >= 0 for e in decision.expansions)
        assert total <= decision.remaining_width
        if name in ("rebase", "sample"):
            if not decision.stop:
                assert total == decision.remaining_width  # the whole width is spent
            if depth > 0:
                # every path is either finished or on this depth: none lost, none extra
                assert len(frontier) + finished_before == budget


def test_rebase_and_sample_finish_every_path_when_depth_allows():
    for name in ("rebase", "sample"):
        history, finished = play(name, 16, seed=7, terminal_rate=0.2, max_depth=60)
        assert finished == 16
        assert history[-1][0].remaining_width == 0
