"""What `rebase check` found: one `Finding` per probe, and the report that holds them.

Invariant: a report is blocked exactly when one of its findings has status BLOCKER; a warning
never blocks (the run works, slower or less reproducible), a blocker means the run would be
wrong or empty (scores that do not score, steps that never end, answers never read).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OK = "ok"
WARN = "warn"
BLOCKER = "blocker"
SKIPPED = "skipped"
STATUSES = (OK, WARN, BLOCKER, SKIPPED)


@dataclass(frozen=True)
class Finding:
    """One probe's result. `check` is a stable id (e.g. "policy.seed"); `detail` what was seen;
    `hint` what to do about a warning or blocker."""

    check: str
    status: str
    detail: str
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    @property
    def role(self) -> str:
        return self.check.split(".", 1)[0]


@dataclass(frozen=True)
class CheckReport:
    """The findings of one check, in probe order, and what was probed."""

    findings: tuple[Finding, ...]
    policy_url: str
    reward_url: str
    template: str
    reward_protocol: str
    full: bool  # False: only the cheap probes ran (what `rebase search` runs)
    retries: int = 0  # requests the probes had to retry (server faults)

    @property
    def blockers(self) -> list[Finding]:
        return [f for f in self.findings if f.status == BLOCKER]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == WARN]

    def get(self, check: str) -> Finding | None:
        return next((f for f in self.findings if f.check == check), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (what `rebase check --json` prints and a run stores)."""
        return {
            "policy_url": self.policy_url,
            "reward_url": self.reward_url,
            "template": self.template,
            "reward_protocol": self.reward_protocol,
            "full": self.full,
            "blocked": bool(self.blockers),
            "retries": self.retries,
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass
class Tally:
    """Retries the probes needed (a fault the server answered with costs one): a run stores
    them beside its own, so every fault a server injected is accounted for."""

    retries: int = 0
