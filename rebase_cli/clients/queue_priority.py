"""Request priorities for a policy server that orders its queue by them.

SGLang started with `--enable-priority-scheduling` (0.5.23: `schedule_policy` fcfs or lof)
sorts its waiting requests by `priority`, higher values first (lower first with
`--schedule-low-priority-values-first`), then by arrival; a request without one goes last.
Unless `--disable-priority-preemption` is set, a waiting request also preempts running ones
whose priority is more than `--priority-scheduling-preemption-threshold` (default 10) below its
own, and a preempted request starts its prefill again.

The search asks a shallower level first. When the server's batch is full, a problem that has
done fewer levels then moves ahead of one close to its end, so the problems of a run progress
at a similar pace and its end is not one problem's chain of levels running on an idle server
(first come, first served leaves the last problems admitted to run their remaining levels
alone). The priorities a search sends differ by at most the preemption threshold, so they
reorder the queue and never preempt work already running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How many depths get distinct priorities when the server never preempts; deeper levels share
# the lowest. Trees of step-by-step search are far shallower.
DEPTHS_DISTINGUISHED = 1000
# SGLang 0.5.23's --priority-scheduling-preemption-threshold default.
SGLANG_PREEMPTION_THRESHOLD = 10


@dataclass(frozen=True)
class QueuePriority:
    """How one server orders its queue: `low_values_first` (SGLang's
    `schedule_low_priority_values_first`) and `spread`, the largest difference between two
    requests' priorities that preempts nothing. `for_depth` gives values in [0, spread] (their
    negatives when low values go first), strictly more urgent for a shallower depth until
    depth `spread`."""

    low_values_first: bool = False
    spread: int = DEPTHS_DISTINGUISHED

    def for_depth(self, depth: int) -> int:
        """The priority of a request that expands the parents at `depth` (0: the root)."""
        urgency = self.spread - min(max(depth, 0), self.spread)
        return -urgency if self.low_values_first else urgency

    def describe(self) -> str:
        return "shallower levels first"


def _non_negative_int(value: Any) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def queue_priority_from_server_info(info: Any) -> QueuePriority | None:
    """The queue order an SGLang server says it applies in its /server_info body; None when it
    serves first come, first served (or does not say)."""
    if not isinstance(info, dict) or info.get("enable_priority_scheduling") is not True:
        return None
    if info.get("schedule_policy", "fcfs") not in ("fcfs", "lof"):
        return None  # SGLang refuses to start so; never guess an order it does not apply
    low_first = info.get("schedule_low_priority_values_first") is True
    if info.get("disable_priority_preemption") is True:
        return QueuePriority(low_first, DEPTHS_DISTINGUISHED)
    threshold = _non_negative_int(info.get("priority_scheduling_preemption_threshold"))
    if threshold is None:  # not said: SGLang's default
        threshold = SGLANG_PREEMPTION_THRESHOLD
    return QueuePriority(low_first, min(threshold, DEPTHS_DISTINGUISHED))
