"""The report as one self-contained HTML file: inline CSS, the plot embedded as a base64 PNG,
no scripts and no external `src`/`href`, so it can be mailed or archived as is."""

from __future__ import annotations

import base64
from html import escape

from rebase_cli.errors import UsageError
from rebase_cli.reports.plot import render_plot
from rebase_cli.reports.sections import RunView, TableView, run_views

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #1b1b1b; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem;
     border-bottom: 1px solid #ccc; padding-bottom: .3rem; } h3 { font-size: 1rem; }
.label { background: #fde2e1; color: #8a1c14; font-weight: 700; padding: .4rem .7rem;
         border-left: 4px solid #c62828; margin: .4rem 0; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .15rem 1rem; }
dl.facts dt { color: #666; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: .5rem 0 .2rem; font-size: .9rem; }
th, td { border: 1px solid #d0d0d0; padding: .25rem .6rem; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { caption-side: bottom; text-align: left; color: #666; font-size: .8rem;
          padding-top: .2rem; white-space: nowrap; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #e0e0e0; }
.note { color: #666; font-style: italic; }
"""


def render_html(document: dict) -> str:
    """The full HTML page of the report (see module docstring)."""
    views = run_views(document)
    title = "rebase report · " + ", ".join(r["run"]["ref"] for r in document["runs"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="note">{escape(document["generator"])} · schema {escape(document["schema"])}'
        "</p>",
        _plot(document),
    ]
    parts += [_run(view) for view in views]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _plot(document: dict) -> str:
    try:
        png = render_plot(document, "png")
    except UsageError as exc:
        return f'<p class="note">No plot: {escape(exc.one_line())}</p>'
    data = base64.b64encode(png).decode("ascii")
    return (
        '<figure><img alt="accuracy vs compute per problem, one panel per selection rule" '
        f'src="data:image/png;base64,{data}"></figure>'
    )


def _run(view: RunView) -> str:
    parts = [f"<section><h2>{escape(view.heading)}</h2>"]
    parts += [f'<div class="label">{escape(label)}</div>' for label in view.labels]
    parts.append('<dl class="facts">')
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in view.facts]
    parts.append("</dl>")
    parts += [_table(table) for table in view.tables]
    parts.append("</section>")
    return "\n".join(parts)


def _table(view: TableView) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in view.columns)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(cell)}</td>" if i < view.left else f'<td class="num">{escape(cell)}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in view.rows
    )
    caption = f"<caption>{escape(view.note)}</caption>" if view.note else ""
    return (
        f"<h3>{escape(view.title)}</h3><table>{caption}<thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
