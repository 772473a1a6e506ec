"""The findings of a server check as a rich table (`rebase check`, `rebase runs show`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.markup import escape
from rich.table import Table

_STYLES = {"ok": "green", "warn": "yellow", "blocker": "bold red", "skipped": "dim"}


def findings_table(findings: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    """One row per finding (dicts as `Finding` serialises them): check, status, what was
    seen, and the hint of a warning or blocker."""
    table = Table("check", "status", "detail", title=title, title_justify="left", box=None,
                  header_style="bold underline", pad_edge=False)  # fmt: skip
    table.columns[0].no_wrap = True
    for finding in findings:
        status = str(finding.get("status"))
        detail = escape(str(finding.get("detail")))
        if finding.get("hint") and status in ("warn", "blocker"):
            detail += f"\n[dim]→ {escape(str(finding['hint']))}[/]"
        style = _STYLES.get(status, "")
        table.add_row(str(finding.get("check")), f"[{style}]{status}[/]" if style else status,
                      detail)  # fmt: skip
    return table
