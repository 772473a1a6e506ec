"""Whether a run's tree can be reproduced, and whether its token counts are exact, as stored in
`run.capabilities_json` and shown by `rebase runs show` and every report.

The policy client's `capabilities` say it for one process; a run resumed by several processes
is reproducible only if every one of them was, against the same kind of server, and its
token counts are exact only if they always were.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def merge(stored: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """The capabilities to store after a (re)start: the current process's, made worse by what
    an earlier process of the same run recorded."""
    merged = dict(current)
    if not stored:
        return merged
    if "reproducible" not in stored:
        merged["reproducible"] = False
        merged["reproducible_why"] = (
            "an earlier part of the run predates server identification; its seeds may not "
            "have been applied"
        )
    elif stored.get("reproducible") is False and current.get("reproducible") is not False:
        merged["reproducible"] = False
        merged["reproducible_why"] = f"an earlier part of the run: {stored.get('reproducible_why')}"
    elif "server" in stored and stored.get("server") != current.get("server"):
        merged["reproducible"] = False
        merged["reproducible_why"] = (
            f"resumed against another kind of server ({stored.get('server')}, then "
            f"{current.get('server')})"
        )
    if stored.get("token_counts") == "approximate":
        merged["token_counts"] = "approximate"
    return merged


@dataclass(frozen=True)
class Reproducibility:
    """What a run's capabilities say, ready to show."""

    reproducible: bool | None  # None: the run predates server identification
    why: str | None
    token_counts: str | None  # "exact", "approximate" or None (no step generated yet)

    @property
    def line(self) -> str:
        """`yes (why)`, `no (why)` or `unknown (...)`."""
        if self.reproducible is None:
            return "unknown (the run records no sampling plan)"
        return f"{'yes' if self.reproducible else 'no'} ({self.why})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "reproducible": self.reproducible,
            "reproducible_why": self.why,
            "token_counts": self.token_counts,
        }


def read(capabilities_json: str | None) -> Reproducibility:
    """The reproducibility facts of a run row's `capabilities_json`."""
    caps = json.loads(capabilities_json) if capabilities_json else {}
    if not isinstance(caps, dict):
        caps = {}
    reproducible = caps.get("reproducible")
    return Reproducibility(
        reproducible if isinstance(reproducible, bool) else None,
        caps.get("reproducible_why"),
        caps.get("token_counts"),
    )
