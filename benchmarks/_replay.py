"""Replays the trees of a finished run on an ideal server: how long the same work takes under
a given queue order, with no HTTP, no client and no reward server in the way.

A run's trees do not depend on timing (seeded sampling), so its nodes say exactly what the
policy server had to do: every node is one sequence, costing what the simulator charges
(`LatencyConfig.service_seconds`). The
prompt cache is approximated as the simulator keeps it: the first child of a parent pays for
the prompt tokens its parent's step added (the root's children: the whole prompt), its
siblings for none. A problem's level can start only when its previous level is done, and a
problem is admitted when one of the `admit` in flight finishes (dataset order).

The replay separates what scheduling can do from what the orchestrator costs: the measured
wall time over the replayed makespan under the same queue order is the price of everything
between two levels (requests, scoring, commits), and the makespan under a clairvoyant order
is how close to the ideal any scheduler could come on these trees.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path

from rebase_cli.sim.config import LatencyConfig

ALL_AT_ONCE = 1 << 30


def load_chains(db: Path, latency: LatencyConfig) -> list[list[list[float]]]:
    """Per problem (dataset order), per level, the service seconds of its sequences."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT n.problem_id, n.depth, n.parent_id, n.prompt_tokens, n.completion_tokens, "
            "p.completion_tokens FROM node n JOIN problem pr ON pr.id = n.problem_id "
            "LEFT JOIN node p ON p.id = n.parent_id WHERE n.depth > 0 "
            "ORDER BY pr.dataset_index, n.depth, n.id"
        ).fetchall()
    levels: dict[int, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    order: list[int] = []
    paid: set[int] = set()  # parents whose new prompt tokens a first child has paid for
    for problem, depth, parent, prompt, output, parent_output in rows:
        if problem not in levels:
            order.append(problem)
        uncached = 0
        if parent not in paid:
            paid.add(parent)
            uncached = prompt if depth == 1 else parent_output or 0
        levels[problem][depth].append(latency.service_seconds(uncached, output))
    return [[levels[p][d] for d in sorted(levels[p])] for p in order]


def ideal_seconds(chains: list[list[list[float]]], capacity: int) -> float:
    return sum(sum(map(sum, chain)) for chain in chains) / capacity


def critical_paths(chain: list[list[float]]) -> list[float]:
    """For each level, the least time from its start to the problem's end: the sum of its and
    the later levels' longest sequences."""
    remaining, total = [], 0.0
    for level in reversed(chain):
        total += max(level)
        remaining.append(total)
    return remaining[::-1]


# A queue order: (problem index, level index, arrival time) -> sort key, least first.
Order = Callable[[int, int, float], tuple]


def arrival_order(chains: list[list[list[float]]]) -> Order:
    return lambda problem, level, now: (now,)


def shallowest_first(chains: list[list[list[float]]]) -> Order:
    return lambda problem, level, now: (level, now)


def longest_remaining_path_first(chains: list[list[list[float]]]) -> Order:
    """Clairvoyant: knows every future step's length (no real scheduler does)."""
    paths = [critical_paths(chain) for chain in chains]
    return lambda problem, level, now: (-paths[problem][level], now)


def makespan(chains: list[list[list[float]]], capacity: int, order: Order, admit: int) -> float:
    """Seconds until the last problem's last level is done, `capacity` sequences at a time
    taken in `order`, at most `admit` problems in flight."""
    waiting: list[tuple] = []
    running: list[tuple[float, int]] = []  # (end, problem)
    left = [0] * len(chains)
    level_of = [0] * len(chains)
    pending = deque(range(len(chains)))
    arrivals, free, in_flight, end = 0, capacity, 0, 0.0

    def release(problem: int, level: int, now: float) -> None:
        nonlocal arrivals
        level_of[problem], left[problem] = level, len(chains[problem][level])
        for service in chains[problem][level]:
            arrivals += 1
            heapq.heappush(waiting, (order(problem, level, now), arrivals, problem, service))

    def admit_more(now: float) -> None:
        nonlocal in_flight
        while pending and in_flight < admit:
            in_flight += 1
            release(pending.popleft(), 0, now)

    def dispatch(now: float) -> None:
        nonlocal free
        while free and waiting:
            _, _, problem, service = heapq.heappop(waiting)
            free -= 1
            heapq.heappush(running, (now + service, problem))

    admit_more(0.0)
    dispatch(0.0)
    while running:
        now, problem = heapq.heappop(running)
        free += 1
        left[problem] -= 1
        if left[problem] == 0:
            if level_of[problem] + 1 < len(chains[problem]):
                release(problem, level_of[problem] + 1, now)
            else:
                in_flight -= 1
                end = max(end, now)
                admit_more(now)
        dispatch(now)
    return end
