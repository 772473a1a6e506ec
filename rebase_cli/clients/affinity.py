"""Which problem the requests of the running task belong to.

The runner binds a problem's key around its search; a pool of servers (see `pool`) sends every
request carrying the same key to the same server, so that server's prefix cache holds the
problem's tree. Tasks started inside the bound block (asyncio.gather) inherit the key.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_KEY: ContextVar[Hashable | None] = ContextVar("rebase_affinity_key", default=None)


def current_key() -> Hashable | None:
    """The key bound in this task, or None outside any `bound_to` block."""
    return _KEY.get()


@contextmanager
def bound_to(key: Hashable) -> Iterator[None]:
    """Requests made inside the block (and in tasks it starts) carry `key`."""
    token = _KEY.set(key)
    try:
        yield
    finally:
        _KEY.reset(token)
