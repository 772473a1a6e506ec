"""Particle filtering (Puri et al. 2025, "A Probabilistic Inference Approach to Inference-Time
Scaling of LLMs using Particle-Based Monte Carlo Methods"; its_hub `ParticleFiltering`).

Reading implemented (its_hub `its_hub/algorithms/particle_gibbs.py` with one iteration and no
reference particle): N particles start from the prompt; at every step each open particle gets
one next step, the PRM scores it, and the population is resampled with replacement (multinomial,
`random.choices` in its_hub) in proportion to the softmax of the particles' weights; a particle
drawn k times continues as k copies. The search ends when no particle is open.

In the tree: the root gets N children (the N first steps); at depth d >= 1 the open nodes are
the particles, and an open node drawn k times gets k children (each copy's next step). A node's
allocation row therefore says which particle was kept (children > 0), how many copies it made
(children), and its resampling probability (weight); each child's parent is the particle it was
resampled from.

Where a choice was needed, and which:
- Weights: softmax(score / T) over the PRM's score of the particle's newest step given its
  whole path (its_hub likewise scores each partial path once per step), in [0, 1];
  T = `particle_temperature` (default 0.2). its_hub uses softmax(logit(score)) with no
  temperature; T = 0.2 on [0, 1] scores gives a comparable selection strength (p = 0.9
  against 0.1: e^4 here, e^4.4 there).
- Finished particles keep their slot: a particle that finished (answer, EOS, token limit) keeps
  one unit of width and leaves the resampling; only open particles are resampled, into the width
  left (N minus the finished). its_hub instead resamples finished particles together with open
  ones (a finished particle can be copied or dropped, so its final population may repeat one
  path and lose others); keeping the slot makes every problem end with exactly N distinct
  finished paths, the budget meaning every other method here has, which equal-budget
  comparisons and per-path voting need.
- Draws: N - finished uniforms from `random.Random(seed)` where the seed derives from (run seed,
  problem index, depth) only, inverted through the cumulative weights of the open particles in
  key order; a resumed run therefore draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Sequence

from rebase_cli.domain import LevelDecision, NodeSnapshot
from rebase_cli.search.frontier import (
    WidthStrategy,
    even_split,
    open_decision,
    split_frontier,
    stopped_decision,
)
from rebase_cli.search.rebase import softmax_weights

SEED_BITS = 63


def resampling_seed(run_seed: int, problem_index: int, depth: int) -> int:
    """The seed of the resampling draws of one problem at one depth."""
    material = f"particle-resample:{run_seed}:{problem_index}:{depth}".encode()
    digest = hashlib.blake2b(material, digest_size=8).digest()
    return int.from_bytes(digest, "big") % (1 << SEED_BITS)


def multinomial_counts(weights: Sequence[float], draws: int, seed: int) -> list[int]:
    """How many of `draws` draws with replacement land on each index, P(i) = w_i / sum(w).

    Each draw is one `random()` of `random.Random(seed)` mapped through the cumulative weights
    (what `random.choices` does), so the counts are a pure function of the arguments."""
    if draws <= 0 or not weights:
        return [0] * len(weights)
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    rng = random.Random(seed)
    counts = [0] * len(weights)
    last = len(weights) - 1
    for _ in range(draws):
        index = bisect.bisect_right(cumulative, rng.random() * total, 0, last)
        counts[index] += 1
    return counts


def allocate_particles(
    nodes: Sequence[NodeSnapshot],
    *,
    width: int,
    temperature: float,
    max_path_tokens: int,
    depth: int,
    seed: int,
) -> LevelDecision:
    """The particle filtering decision for the frontier `nodes` at `depth`.

    `width` has the meaning of `allocate_rebase`'s: the particles not finished before this
    depth. This depth's finished nodes keep their slot; the width left is resampled over the
    open nodes. At depth 0 the root gets all of it. The counts sum to the width left; weights
    are the resampling probabilities (summing to 1 over the open nodes).
    """
    open_nodes, finished = split_frontier(nodes, max_path_tokens)
    remaining = width - finished
    if remaining <= 0 or not open_nodes:
        return stopped_decision(open_nodes, remaining)
    # The population's order is key order, so ties in score cannot change the draws.
    open_nodes.sort(key=lambda node: node.key)
    if depth == 0:
        return even_split(open_nodes, remaining)
    weights = softmax_weights([node.score for node in open_nodes], temperature)
    total = math.fsum(weights)
    shares = [weight / total for weight in weights]
    return open_decision(
        open_nodes, shares, multinomial_counts(weights, remaining, seed), remaining
    )


class ParticleStrategy(WidthStrategy):
    """Particle filtering with N particles and resampling temperature `particle_temperature`."""

    name = "particle"

    def allocate(
        self, frontier: Sequence[NodeSnapshot], width: int, depth: int, problem_index: int = 0
    ) -> LevelDecision:
        return allocate_particles(
            frontier,
            width=width,
            temperature=self.params.particle_temperature,
            max_path_tokens=self.params.max_path_tokens,
            depth=depth,
            seed=resampling_seed(self.params.seed, problem_index, depth),
        )
