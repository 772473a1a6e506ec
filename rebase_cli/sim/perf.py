"""A GPU server's cost model: service time, a capacity in running sequences, a prefix cache,
and the counters a benchmark needs to compute the ideal server-bound time.

A request is a list of sequences (the n choices of each prompt of a completion, the inputs of a
native /generate batch, the items of a scoring call), and each sequence is scheduled on its
own, as SGLang and vLLM do: SGLang's tokenizer manager splits a batch (and n > 1) into
separate requests for its scheduler, and vLLM fans n out into child requests. A sequence holds
one of `max_running` slots for `base + its uncached prompt tokens * prompt_token_ms + its own
output tokens * output_token_ms` and frees it when it is done, whatever its siblings still do;
beyond `max_running` sequences wait (a continuous-batching server whose batch is full): in
arrival order, or, on a server with priority scheduling, by the request's priority first
(higher values first; a request without one last, as SGLang 0.5.23's scheduler orders its
waiting queue under --enable-priority-scheduling). Running sequences are never preempted
(--disable-priority-preemption). The request is answered when its last sequence is done.
The prefix cache remembers prompt prefixes in blocks of PREFIX_BLOCK_CHARS characters (LRU),
like RadixAttention: a prompt that extends a cached one pays only for its new blocks, and the
second of n choices of one prompt finds the whole prompt cached.

Counters are kept whether or not latency is modelled: `slot_seconds / max_running` is the
least wall time any client could need for the work it sent (the server-bound ideal).
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass

from rebase_cli.sim.config import LatencyConfig

PREFIX_BLOCK_CHARS = 64


class PrefixCache:
    """LRU set of prompt-prefix block hashes."""

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = capacity_blocks
        self._blocks: OrderedDict[bytes, None] = OrderedDict()

    def lookup_and_insert(self, prompt: str) -> float:
        """The cached fraction of `prompt` (whole leading blocks already seen), then remember
        all of its blocks."""
        data = prompt.encode()
        if not data or self.capacity <= 0:
            return 0.0
        digest = hashlib.blake2b(digest_size=16)
        cached_upto, still_cached = 0, True
        for start in range(0, len(data) - PREFIX_BLOCK_CHARS + 1, PREFIX_BLOCK_CHARS):
            digest.update(data[start : start + PREFIX_BLOCK_CHARS])
            key = digest.copy().digest()
            if key in self._blocks:
                self._blocks.move_to_end(key)
                if still_cached:
                    cached_upto = start + PREFIX_BLOCK_CHARS
            else:
                still_cached = False
                self._blocks[key] = None
                if len(self._blocks) > self.capacity:
                    self._blocks.popitem(last=False)
        return cached_upto / len(data)

    def clear(self) -> None:
        self._blocks.clear()


class SlotPool:
    """A counting semaphore whose freed slot goes to the waiter with the least `rank`, and
    among equal ranks to the longest waiter (all ranks equal: FIFO)."""

    def __init__(self, capacity: int) -> None:
        self.free = capacity
        self._waiters: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()

    async def acquire(self, rank: float = 0.0) -> None:
        if not self._waiters and self.free > 0:
            self.free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._arrivals), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted just as the waiter was cancelled
            raise  # a cancelled waiter stays in the heap until a release skips it

    @property
    def waiting(self) -> int:
        """Acquirers waiting for a slot (cancelled ones may still be counted)."""
        return len(self._waiters)

    def release(self) -> None:
        self.free += 1
        while self._waiters and self.free > 0:
            future = heapq.heappop(self._waiters)[2]
            if future.cancelled():
                continue
            self.free -= 1
            future.set_result(None)


@dataclass(frozen=True)
class SequenceWork:
    """One sequence a request asks for: its prompt (text and tokens) and the tokens it
    generates (0 for prefill-only work such as scoring)."""

    prompt: str
    prompt_tokens: int
    output_tokens: int = 0


@dataclass
class Counters:
    """What the server did since start (or the last reset). Token counts are per sequence:
    the n choices of one prompt count its tokens n times, all but the first as cached."""

    requests: dict[str, int]
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    sequences: int = 0
    busy_seconds: float = 0.0  # sum over requests of their longest sequence's service time
    slot_seconds: float = 0.0  # sum over sequences of their service times
    # Sum over sequences of the time they actually held a slot: above slot_seconds when the
    # simulator's own event loop is too busy to wake a sequence on time.
    held_seconds: float = 0.0
    queue_seconds: float = 0.0  # sum over requests of the wait until their last sequence ran
    max_in_flight: int = 0  # the most sequences running at once


class PerfModel:
    """Cost accounting and (when enabled) the waits that make the server behave like a GPU."""

    def __init__(self, config: LatencyConfig) -> None:
        self.config = config
        self.cache = PrefixCache(config.prefix_cache_blocks if config.prefix_cache else 0)
        self.pool = SlotPool(config.max_running) if config.max_running else None
        self.started = time.monotonic()
        self.in_flight = 0
        self.counters = Counters(requests={})

    def reset(self) -> None:
        self.cache.clear()
        self.counters = Counters(requests={})
        self.started = time.monotonic()

    def count_request(self, route: str) -> None:
        requests = self.counters.requests
        requests[route] = requests.get(route, 0) + 1

    def _service_seconds(self, sequence: SequenceWork) -> float:
        """Account for one sequence; its service time (prefix-cache lookups in arrival order)."""
        counters, config = self.counters, self.config
        counters.prompt_tokens += sequence.prompt_tokens
        counters.completion_tokens += sequence.output_tokens
        counters.sequences += 1
        cached = 0
        if config.enabled and config.prefix_cache and sequence.prompt_tokens:
            fraction = self.cache.lookup_and_insert(sequence.prompt)
            cached = int(sequence.prompt_tokens * fraction)
        counters.cached_prompt_tokens += cached
        service = config.service_seconds(sequence.prompt_tokens - cached, sequence.output_tokens)
        counters.slot_seconds += service
        return service

    def _rank(self, priority: int | None) -> float:
        """Where a request's sequences queue: by priority on a priority-scheduling server."""
        if not self.config.priority_scheduling:
            return 0.0
        return math.inf if priority is None else float(-priority)

    async def serve(self, sequences: list[SequenceWork], priority: int | None = None) -> None:
        """Account for one request of `sequences` and, with latency modelling on, run each
        sequence in its own slot (see the module docstring); returns when all are done."""
        services = [self._service_seconds(sequence) for sequence in sequences]
        self.counters.busy_seconds += max(services, default=0.0)
        if not self.config.enabled or not services:
            return
        arrived, rank = time.monotonic(), self._rank(priority)
        if len(services) == 1:
            started = [await self._run(services[0], rank)]
        else:
            started = await asyncio.gather(*(self._run(service, rank) for service in services))
        self.counters.queue_seconds += max(started) - arrived

    async def _run(self, service: float, rank: float) -> float:
        """One sequence: wait for a slot, hold it for `service` seconds; when it started."""
        if self.pool is not None:
            await self.pool.acquire(rank)
        started = time.monotonic()
        self.in_flight += 1
        self.counters.max_in_flight = max(self.counters.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(service)
        finally:
            self.counters.held_seconds += time.monotonic() - started
            self.in_flight -= 1
            if self.pool is not None:
                self.pool.release()
        return started

    def snapshot(self) -> dict[str, object]:
        counters, config = self.counters, self.config
        return {
            "uptime_seconds": time.monotonic() - self.started,
            "requests": dict(counters.requests),
            "prompt_tokens": counters.prompt_tokens,
            "cached_prompt_tokens": counters.cached_prompt_tokens,
            "completion_tokens": counters.completion_tokens,
            "sequences": counters.sequences,
            "busy_seconds": counters.busy_seconds,
            "slot_seconds": counters.slot_seconds,
            "held_seconds": counters.held_seconds,
            "queue_seconds": counters.queue_seconds,
            "max_in_flight": counters.max_in_flight,
            "running_sequences": self.in_flight,
            "waiting_sequences": self.pool.waiting if self.pool is not None else 0,
            "max_running": config.max_running,
            # With unlimited capacity there is no server-bound floor beyond one request.
            "ideal_seconds": (
                counters.slot_seconds / config.max_running if config.max_running else None
            ),
            "latency_modelled": config.enabled,
        }
