"""The report as GitHub-flavoured Markdown."""

from __future__ import annotations

from rebase_cli.reports.sections import TableView, run_views


def render_markdown(document: dict) -> str:
    lines: list[str] = ["# rebase report", ""]
    for view in run_views(document):
        lines += [f"## {view.heading}", ""]
        lines += [f"> **{label}**" for label in view.labels]
        if view.labels:
            lines.append("")
        lines += [f"- **{key}**: {_cell(value)}" for key, value in view.facts]
        lines.append("")
        for table in view.tables:
            lines += _table(table)
    return "\n".join(lines).rstrip() + "\n"


def _table(view: TableView) -> list[str]:
    lines = [f"### {view.title}", ""]
    lines.append("| " + " | ".join(_cell(c) for c in view.columns) + " |")
    lines.append(
        "|" + "|".join(":---" if i < view.left else "---:" for i in range(len(view.columns))) + "|"
    )
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in view.rows]
    if view.note:
        lines += ["", f"*{_cell(view.note)}*"]
    lines.append("")
    return lines


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return " ".join(str(text).split()).replace("|", "\\|")
