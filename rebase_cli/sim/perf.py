"""A GPU server's cost model: service time, a capacity in running sequences, a prefix cache,
and the counters a benchmark needs to compute the ideal server-bound time.

Service time of a request = base + uncached prompt tokens * prompt_token_ms + longest output
* output_token_ms (the n sequences of a request decode in parallel). A request holds `slots`
sequences while it is served; beyond `max_running` sequences requests wait in FIFO order, as
in a continuous-batching server whose batch is full. The prefix cache remembers prompt prefixes
in blocks of PREFIX_BLOCK_CHARS characters (LRU), like RadixAttention: a prompt that extends a
cached one pays only for its new blocks.

Counters are kept whether or not latency is modelled: `slot_seconds / max_running` is the
least wall time any client could need for the work it sent (the server-bound ideal).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict, deque
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
    """A counting semaphore whose acquire takes k slots at once, served in FIFO order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def acquire(self, k: int) -> None:
        k = min(k, self.capacity)
        if not self._waiters and self.free >= k:
            self.free -= k
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((k, future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(k)  # granted just as the waiter was cancelled
            else:
                self._waiters.remove((k, future))
            raise

    def release(self, k: int) -> None:
        self.free += min(k, self.capacity)
        while self._waiters and self._waiters[0][0] <= self.free:
            k_next, future = self._waiters.popleft()
            if future.cancelled():
                continue
            self.free -= k_next
            future.set_result(None)


@dataclass
class Counters:
    """What the server did since start (or the last reset)."""

    requests: dict[str, int]
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    completion_tokens: int = 0
    sequences: int = 0
    busy_seconds: float = 0.0  # sum of modelled service times
    slot_seconds: float = 0.0  # sum of service time x sequences held
    queue_seconds: float = 0.0  # time spent waiting for capacity
    max_in_flight: int = 0


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

    async def serve(
        self,
        prompts: list[str],
        prompt_tokens: int,
        *,
        completion_tokens: int = 0,
        longest_output: int = 0,
        slots: int = 1,
    ) -> None:
        """Account for one request and, with latency modelling on, wait for capacity and
        for its service time. `longest_output` is the longest output among its sequences."""
        counters, config = self.counters, self.config
        counters.prompt_tokens += prompt_tokens
        counters.completion_tokens += completion_tokens
        counters.sequences += slots
        cached = 0
        if config.enabled and config.prefix_cache and prompt_tokens:
            total_chars = sum(len(p) for p in prompts) or 1
            cached_chars = sum(self.cache.lookup_and_insert(p) * len(p) for p in prompts)
            cached = int(prompt_tokens * cached_chars / total_chars)
        counters.cached_prompt_tokens += cached
        service = (
            config.base_ms
            + (prompt_tokens - cached) * config.prompt_token_ms
            + longest_output * config.output_token_ms
        ) / 1000.0
        counters.busy_seconds += service
        counters.slot_seconds += service * slots
        if not config.enabled:
            return
        queued = time.monotonic()
        if self.pool is not None:
            await self.pool.acquire(slots)
        counters.queue_seconds += time.monotonic() - queued
        self.in_flight += slots
        counters.max_in_flight = max(counters.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(service)
        finally:
            self.in_flight -= slots
            if self.pool is not None:
                self.pool.release(slots)

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
            "queue_seconds": counters.queue_seconds,
            "max_in_flight": counters.max_in_flight,
            "max_running": config.max_running,
            # With unlimited capacity there is no server-bound floor beyond one request.
            "ideal_seconds": (
                counters.slot_seconds / config.max_running if config.max_running else None
            ),
            "latency_modelled": config.enabled,
        }
