"""REBASE allocation variants: `softmax_with_truncate`, the paper's rounding, the authors' tie
order. Properties are checked against plain implementations written here with fractions."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rebase_cli.domain import NodeSnapshot
from rebase_cli.search import allocate_rebase
from rebase_cli.search.shares import rounded_shares, truncated_count

BIG = 10**9


def node(key: int, score: float, *, terminal: bool = False) -> NodeSnapshot:
    return NodeSnapshot(key=key, depth=1, score=score, terminal=terminal, path_tokens=0)


def allocate(nodes, width, **options):
    return allocate_rebase(
        nodes, width=width, balance_temperature=0.2, max_path_tokens=BIG, **options
    )


scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
frontiers = st.lists(scores, min_size=1, max_size=40).map(
    lambda values: [node(key, score) for key, score in enumerate(values)]
)
ratios = st.sampled_from([0.05, 0.1, 0.25, 0.3, 0.5, 0.7, 0.75, 0.9, 1.0]) | st.floats(
    min_value=1e-3, max_value=1.0
)
widths = st.integers(min_value=1, max_value=256)


# --- softmax_with_truncate -----------------------------------------------------------------


def test_truncate_keeps_the_best_ceil_of_the_ratio():
    nodes = [node(0, 0.1), node(1, 0.9), node(2, 0.5), node(3, 0.7), node(4, 0.3)]
    decision = allocate(nodes, 8, truncate_ratio=0.5)  # ceil(5 * 0.5) = 3 kept: 1, 3, 2
    assert [e.key for e in decision.expansions] == [1, 3, 2, 4, 0]
    assert [e.children for e in decision.expansions[3:]] == [0, 0]
    assert [e.weight for e in decision.expansions[3:]] == [0.0, 0.0]
    assert sum(e.children for e in decision.expansions) == 8


def test_ratio_is_read_as_the_decimal_written():
    # float: 10 * 0.3 = 3.0000000000000004, whose ceiling is 4; 0.3 means 3/10
    assert truncated_count(10, 0.3) == 3
    assert truncated_count(3, 0.01) == 1
    assert truncated_count(7, 1.0) == 7
    with pytest.raises(ValueError):
        truncated_count(4, 0.0)


@settings(max_examples=300, deadline=None)
@given(frontiers, widths, ratios)
def test_truncated_allocation_is_the_plain_one_over_the_kept_nodes(nodes, width, ratio):
    decision = allocate(nodes, width, truncate_ratio=ratio)
    keep = math.ceil(len(nodes) * Fraction(repr(ratio)))
    assert keep == truncated_count(len(nodes), ratio)
    ranked = sorted(nodes, key=lambda n: (-n.score, n.key))
    assert [e.key for e in decision.expansions] == [n.key for n in ranked]
    plain = allocate(ranked[:keep], width)
    assert [(e.key, e.children) for e in decision.expansions[:keep]] == [
        (e.key, e.children) for e in plain.expansions
    ]
    assert all(e.children == 0 and e.weight == 0.0 for e in decision.expansions[keep:])
    assert sum(e.children for e in decision.expansions) == width
    assert math.fsum(e.weight for e in decision.expansions) == pytest.approx(1.0)


@settings(max_examples=200, deadline=None)
@given(frontiers, widths)
def test_ratio_one_is_plain_softmax(nodes, width):
    assert allocate(nodes, width, truncate_ratio=1.0) == allocate(nodes, width)


@settings(max_examples=200, deadline=None)
@given(frontiers, widths, ratios)
def test_truncated_counts_never_increase_down_the_ranking(nodes, width, ratio):
    counts = [e.children for e in allocate(nodes, width, truncate_ratio=ratio).expansions]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] >= 1


def test_truncate_keeps_the_terminal_accounting():
    nodes = [node(0, 0.9, terminal=True), node(1, 0.8), node(2, 0.4), node(3, 0.2)]
    decision = allocate(nodes, 5, truncate_ratio=0.34)  # ceil(3 * 0.34) = 2 of the 3 open
    assert decision.remaining_width == 4
    assert [(e.key, e.children) for e in decision.expansions][2] == (3, 0)


# --- the paper's Round(W * softmax) -------------------------------------------------------


def test_paper_rounding_hand_computed():
    # shares 1 / (1 + e^-2) = 0.8808 and 0.1192 of 4: 3.52 -> 4 and 0.48 -> 0
    assert rounded_shares([1.0, math.exp(-2)], 4) == [4, 0]
    # four equal shares of 2 (0.5 each) round half up: 1 each, 4 children for width 2
    assert rounded_shares([1.0] * 4, 2) == [1, 1, 1, 1]
    # five equal shares of 2 (0.4 each): nobody gets a child
    assert rounded_shares([1.0] * 5, 2) == [0] * 5


@settings(max_examples=300, deadline=None)
@given(st.lists(scores, min_size=1, max_size=40), widths)
def test_paper_rounding_is_each_share_rounded(values, width):
    weights = [math.exp((v - max(values)) / 0.2) for v in values]
    total = sum(Fraction(w) for w in weights)
    counts = rounded_shares(weights, width)
    for weight, count in zip(weights, counts, strict=True):
        share = width * Fraction(weight) / total
        assert count == math.floor(share + Fraction(1, 2))
    assert abs(sum(counts) - width) <= len(values) / 2


def test_allocation_with_paper_rounding():
    decision = allocate([node(0, 0.5), node(1, 0.5), node(2, 0.5)], 4, share_rounding="round")
    assert [e.children for e in decision.expansions] == [1, 1, 1]  # 4/3 rounds to 1


# --- tie order ------------------------------------------------------------------------------


def test_later_first_ties_match_a_stable_ascending_sort_reversed():
    nodes = [node(0, 0.5), node(1, 0.7), node(2, 0.5), node(3, 0.7), node(4, 0.5)]
    authors = list(reversed(sorted(nodes, key=lambda n: n.score)))
    decision = allocate(nodes, 7, tie_order="later-first")
    assert [e.key for e in decision.expansions] == [n.key for n in authors] == [3, 1, 4, 2, 0]
    ours = allocate(nodes, 7)
    assert [e.key for e in ours.expansions] == [1, 3, 0, 2, 4]
    # the same scores get the same counts; only which node of a tie is walked first changes
    assert [e.children for e in decision.expansions] == [e.children for e in ours.expansions]
