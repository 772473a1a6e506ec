"""Deterministic sampling seeds.

A request's seed depends only on (run seed, problem index, parent depth, parent ordinal), never
on database ids or timing, so a resumed run asks a deterministic server exactly the questions an
uninterrupted run would have asked. Children of one request differ by their sample index.
"""

from __future__ import annotations

import hashlib

SEED_BITS = 31


def request_seed(run_seed: int, problem_index: int, parent_depth: int, parent_ordinal: int) -> int:
    """A 31-bit seed for the request that expands one parent node."""
    material = f"{run_seed}:{problem_index}:{parent_depth}:{parent_ordinal}".encode()
    digest = hashlib.blake2b(material, digest_size=8).digest()
    return int.from_bytes(digest, "big") % (1 << SEED_BITS)
