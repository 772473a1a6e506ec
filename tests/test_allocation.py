"""REBASE allocation (DESIGN §4 steps 1-3): hand-computed cases and properties.

The property tests compare `allocate_rebase` with a plain implementation of the reference
rule written below with Python floats, `math` and exact fractions.
"""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.domain import NodeSnapshot
from rebase_cli.search import allocate_rebase
from rebase_cli.search.rebase import sequential_ceil

BIG = 10**9  # a path token limit no test node reaches


def node(key: int, score: float, *, terminal: bool = False, tokens: int = 0) -> NodeSnapshot:
    return NodeSnapshot(key=key, depth=1, score=score, terminal=terminal, path_tokens=tokens)


def children(decision) -> dict[int, int]:
    return {e.key: e.children for e in decision.expansions}


def allocate(nodes, width, temperature=0.2, max_path_tokens=BIG):
    return allocate_rebase(
        nodes, width=width, balance_temperature=temperature, max_path_tokens=max_path_tokens
    )


# --- hand-computed cases --------------------------------------------------------------------


def test_paper_temperature_gives_almost_everything_to_a_clearly_better_node():
    # w = [1, e^-2]: ceil(4 / 1.1353) = ceil(3.52) = 4, nothing left for the second node
    decision = allocate([node(0, 0.9), node(1, 0.5)], width=4, temperature=0.2)
    assert children(decision) == {0: 4, 1: 0}
    assert decision.remaining_width == 4 and not decision.stop
    assert decision.expansions[0].weight == pytest.approx(1 / (1 + math.exp(-2)))
    assert decision.expansions[1].weight == pytest.approx(math.exp(-2) / (1 + math.exp(-2)))


def test_warmer_temperature_spreads_the_width():
    # w = [1, e^-0.4 = 0.670]: ceil(4 / 1.670) = 3, then ceil(1 * w / w) = 1
    decision = allocate([node(0, 0.9), node(1, 0.5)], width=4, temperature=1.0)
    assert children(decision) == {0: 3, 1: 1}


def test_three_nodes_sixteen_wide():
    # w = [1, e^-1, e^-2.5], S = 1.44997: ceil(16 / S) = ceil(11.03) = 12; left 4:
    # ceil(4 * 0.36788 / 0.44997) = ceil(3.27) = 4; left 0 for the last node.
    decision = allocate([node(7, 0.3), node(5, 0.8), node(6, 0.6)], width=16, temperature=0.2)
    assert [(e.key, e.children) for e in decision.expansions] == [(5, 12), (6, 4), (7, 0)]
    assert math.fsum(e.weight for e in decision.expansions) == pytest.approx(1.0)


def test_ties_are_broken_by_key_ascending():
    # equal weights: ceil(4/3) = 2, ceil(2/2) = 1, ceil(1/1) = 1, in key order
    decision = allocate([node(3, 0.5), node(1, 0.5), node(2, 0.5)], width=4)
    assert [(e.key, e.children) for e in decision.expansions] == [(1, 2), (2, 1), (3, 1)]


def test_terminal_and_over_length_nodes_each_take_one_unit_of_width():
    nodes = [
        node(0, 0.9, terminal=True),
        node(1, 0.8, tokens=1024),  # path at the token limit: finished, never expanded
        node(2, 0.7, tokens=1023),
        node(3, 0.1),
    ]
    decision = allocate(nodes, width=6, temperature=0.2, max_path_tokens=1024)
    assert decision.remaining_width == 4
    assert [e.key for e in decision.expansions] == [2, 3]
    # w = [1, e^-3 = 0.0498]: ceil(4 / 1.0498) = 4
    assert children(decision) == {2: 4, 3: 0}


def test_all_terminal_stops_with_the_width_accounted():
    decision = allocate([node(0, 0.9, terminal=True), node(1, 0.4, terminal=True)], width=5)
    assert decision.stop and decision.expansions == () and decision.remaining_width == 3


def test_exhausted_width_stops_and_lists_open_nodes_as_pruned():
    nodes = [node(0, 0.9, terminal=True), node(1, 0.8, terminal=True), node(2, 0.7)]
    decision = allocate(nodes, width=2)
    assert decision.stop and decision.remaining_width == 0
    assert [(e.key, e.weight, e.children) for e in decision.expansions] == [(2, 0.0, 0)]


def test_more_finished_than_width_never_reports_negative_width():
    decision = allocate([node(0, 0.9, terminal=True), node(1, 0.8, terminal=True)], width=1)
    assert decision.stop and decision.remaining_width == 0


def test_tiny_temperature_is_greedy_and_ties_at_the_top_share():
    assert children(allocate([node(0, 0.9), node(1, 0.89)], width=5, temperature=1e-6)) == {
        0: 5,
        1: 0,
    }
    # the two best are tied (w = 1, 1, 0): ceil(5/2) = 3, ceil(2/1) = 2, 0
    tied = allocate([node(0, 0.9), node(1, 0.9), node(2, 0.1)], width=5, temperature=1e-6)
    assert children(tied) == {0: 3, 1: 2, 2: 0}


def test_huge_temperature_is_uniform():
    decision = allocate([node(0, 0.9), node(1, 0.5), node(2, 0.1)], width=5, temperature=1e9)
    assert children(decision) == {0: 2, 1: 2, 2: 1}
    assert [e.weight for e in decision.expansions] == pytest.approx([1 / 3] * 3)


def test_exact_ceilings_do_not_over_allocate_on_rounding_noise():
    # 0.1 + 0.2 != 0.3 in floats; the integer evaluation still sums exactly to the width
    counts = sequential_ceil([0.3, 0.2, 0.1], 6)
    assert counts == [3, 2, 1]


def test_non_finite_scores_and_bad_temperatures_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        allocate([node(0, float("nan"))], width=2)
    with pytest.raises(ValueError, match="temperature"):
        allocate([node(0, 0.5)], width=2, temperature=0.0)


# --- the reference rule, written plainly -----------------------------------------------------


def plain_reference_rule(nodes, width, temperature, max_path_tokens):
    """The reference's select_and_expand + select_softmax on one depth, in exact arithmetic:
    finished nodes take one unit each; the rest, best first, get
    ceil(W_left * w_i / sum_{j>=i} w_j) with w_i = exp((s_i - max) / T)."""
    open_nodes = [n for n in nodes if not n.terminal and n.path_tokens < max_path_tokens]
    left = width - (len(nodes) - len(open_nodes))
    if left <= 0 or not open_nodes:
        return {}
    open_nodes.sort(key=lambda n: (-n.score, n.key))
    top = open_nodes[0].score
    weights = [Fraction(math.exp((n.score - top) / temperature)) for n in open_nodes]
    result = {}
    for i, n in enumerate(open_nodes):
        rest = sum(weights[i:])
        count = math.ceil(left * weights[i] / rest) if rest > 0 else 0
        result[n.key] = count
        left -= count
    return result


unit_scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
wide_scores = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
temperatures = st.one_of(
    st.floats(min_value=1e-4, max_value=1e4),
    st.sampled_from([1e-12, 0.2, 1.0, 1e12]),
)


@st.composite
def frontiers(draw, scores=unit_scores):
    size = draw(st.integers(min_value=0, max_value=40))
    keys = draw(st.lists(st.integers(0, 10_000), min_size=size, max_size=size, unique=True))
    return [
        NodeSnapshot(
            key=key,
            depth=3,
            score=draw(scores),
            terminal=draw(st.sampled_from([False, False, False, True])),
            path_tokens=draw(st.integers(0, 1100)),
        )
        for key in keys
    ]


@settings(max_examples=400, deadline=None)
@given(
    nodes=st.one_of(frontiers(), frontiers(wide_scores)),
    width=st.integers(min_value=0, max_value=300),
    temperature=temperatures,
)
def test_allocation_properties(nodes, width, temperature):
    decision = allocate(nodes, width, temperature, max_path_tokens=1024)
    open_nodes = [n for n in nodes if not n.terminal and n.path_tokens < 1024]
    left = width - (len(nodes) - len(open_nodes))
    counts = [e.children for e in decision.expansions]

    assert all(count >= 0 for count in counts)
    assert decision.remaining_width == max(left, 0)
    assert decision.stop == (left <= 0 or not open_nodes)
    assert sorted(e.key for e in decision.expansions) == sorted(n.key for n in open_nodes)
    if not decision.stop:
        assert sum(counts) == left  # exactly the width left, never more or less
        assert counts[0] >= 1  # the best node always gets a child when width remains
        assert math.fsum(e.weight for e in decision.expansions) == pytest.approx(1.0)
    else:
        assert sum(counts) == 0
    # best first: score descending, key ascending; the counts follow that order
    by_key = {n.key: n for n in nodes}
    order = [(-by_key[e.key].score, e.key) for e in decision.expansions]
    assert order == sorted(order)
    # exact ceilings never give a node more than the better node before it:
    # x_{i+1} <= W_i * w_{i+1} / S_i <= W_i * w_i / S_i <= n_i, so n_{i+1} <= n_i
    assert all(a >= b for a, b in itertools.pairwise(counts))
    # the same as the plain reference rule
    expected = plain_reference_rule(nodes, width, temperature, 1024)
    if not decision.stop:
        assert children(decision) == expected


@settings(max_examples=100, deadline=None)
@given(nodes=frontiers(), width=st.integers(0, 100), seed=st.integers(0, 2**32))
def test_allocation_ignores_the_order_nodes_arrive_in(nodes, width, seed):
    shuffled = list(nodes)
    random.Random(seed).shuffle(shuffled)
    assert allocate(nodes, width) == allocate(shuffled, width)


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=50),
    width=st.integers(1, 500),
)
def test_sequential_ceil_sums_exactly_whenever_a_weight_is_positive(weights, width):
    counts = sequential_ceil(weights, width)
    assert all(c >= 0 for c in counts)
    if any(w > 0 for w in weights):
        assert sum(counts) == width
    else:
        assert sum(counts) == 0
