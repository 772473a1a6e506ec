"""What a search needs from storage, as one narrow interface bound to (run, lease owner).

Contract (tests/test_store_contract.py runs it against every implementation):
- `take_lease` succeeds unless another owner holds an unexpired lease whose holder is not
  known to be gone (RunLockedError, nothing changed); it marks the run running.
- Every write after that (`pending_problems`' reset, `start_problem`, `commit_levels`,
  `finish_problem`, `fail_problem`) checks in its own transaction that this owner still holds
  the lease and raises RunLockedError, writing nothing, once it does not.
- `commit_levels` is atomic: all its levels or nothing; a level that does not follow the last
  committed one is refused with StoreError.
- `start_problem` returns exactly the nodes committed so far, ordered by (depth, ordinal).
- `close` sets the final status only while this owner holds the lease, and releases it.
Implementations are plain blocking code; the runner calls them off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Protocol

from rebase_cli.domain import LevelCommit, NewNode, ProblemRecord, RunStatus


class SearchStore(Protocol):
    """The storage of one run's search, as seen by the lease owner `owner`."""

    run_id: int
    owner: str

    def take_lease(self, ttl: timedelta, holder_is_gone: Callable[[str], bool]) -> None:
        """Take the run's lease for `ttl` (see the module contract)."""
        ...

    def renew_lease(self, ttl: timedelta) -> bool:
        """Extend the lease; False when another owner took it over meanwhile."""
        ...

    def close(self, status: RunStatus, wall_seconds: float) -> bool:
        """Set the run's final status, add its wall time and release the lease; False (nothing
        changed) when another owner holds the run."""
        ...

    def pending_problems(self) -> list[ProblemRecord]:
        """Reset problems a dead process left running (and failed ones, to retry them) to
        pending, then return the pending problems in dataset order."""
        ...

    def start_problem(self, problem_id: int) -> tuple[NewNode, ...]:
        """Mark a problem running and return its committed nodes by (depth, ordinal)."""
        ...

    def commit_levels(self, problem_id: int, levels: Sequence[LevelCommit], elapsed: float) -> None:
        """Commit consecutive levels of a problem at once, adding `elapsed` seconds."""
        ...

    def finish_problem(self, problem_id: int, elapsed: float) -> None:
        """Mark a problem done (its search stopped), adding `elapsed` seconds."""
        ...

    def fail_problem(self, problem_id: int, error: str) -> None:
        """Mark a problem failed with its error; its committed levels stay."""
        ...

    def status_counts(self) -> Mapping[str, int]:
        """How many of the run's problems have each status (those with none left out)."""
        ...
