"""Accuracy against inference FLOPs per problem (log x): the picture at the centre of the paper.

One line per (method, selection rule) across the given runs; its points are the runs (and a
`sample` run's subsampled budgets), sorted by FLOPs. Colour is the rule, line style and marker
the method. The figure is drawn on a bare `Figure` with the Agg canvas, so no GUI backend and
no pyplot global state are involved.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from rebase_cli.errors import UsageError
from rebase_cli.reports.compute import COMPUTE_AXES
from rebase_cli.reports.labels import SIMULATED_LABEL
from rebase_cli.reports.selection import RULE_LABELS, RULES

FORMATS = ("png", "svg")
_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_points(
    document: dict, axis: str = "flops"
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(method, rule) → [(compute per problem, accuracy)] sorted by compute (FLOPs, or the
    paper's policy generated tokens: `COMPUTE_AXES`); rows without either are left out."""
    key = COMPUTE_AXES[axis][0]
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for report in document["runs"]:
        method = report["run"]["method"]
        for row in report["accuracy"]:
            x = row.get(key)
            if x is None or x <= 0:
                continue
            for rule in RULES:
                y = row["accuracy"][rule]
                if y is not None:
                    lines.setdefault((method, rule), []).append((x, y))
    return {key: sorted(points) for key, points in lines.items()}


def render_plot(document: dict, fmt: str = "png", axis: str = "flops") -> bytes:
    """The figure as PNG or SVG bytes. Raises UsageError when no run has FLOPs to plot."""
    if fmt not in FORMATS:
        raise UsageError(f"cannot write a plot as {fmt!r}", "use a .png or .svg file name")
    lines = plot_points(document, axis)
    if not lines:
        missing = [
            r["run"]["ref"] for r in document["runs"] if r["compute"]["flops"]["total"] is None
        ]
        hint = (
            f"FLOPs of {', '.join(missing)} are unknown: pass --policy-params/--reward-params"
            if missing
            else "the runs have no finished problems yet"
        )
        raise UsageError("nothing to plot", hint)
    figure = Figure(figsize=(10, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    methods = sorted({method for method, _ in lines})
    colours = {rule: f"C{i}" for i, rule in enumerate(RULES)}
    for (method, rule), points in sorted(lines.items()):
        m = methods.index(method)
        xs, ys = zip(*points, strict=True)
        axes.plot(
            xs,
            ys,
            linestyle=_STYLES[m % len(_STYLES)],
            marker=_MARKERS[m % len(_MARKERS)],
            color=colours[rule],
            alpha=0.6 if rule == "pass_at_n" else 0.9,
        )
    axes.set_xscale("log")
    axes.set_xlabel(COMPUTE_AXES[axis][1])
    axes.set_ylabel("accuracy")
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.grid(True, which="both", alpha=0.3)
    datasets = sorted({r["run"]["dataset"] for r in document["runs"]})
    axes.set_title(f"Accuracy vs compute · {', '.join(datasets)}")
    rule_legend = axes.legend(
        handles=[Line2D([], [], color=colours[r], label=RULE_LABELS[r]) for r in RULES],
        title="selection rule",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize="small",
    )
    axes.add_artist(rule_legend)
    axes.legend(
        handles=[
            Line2D(
                [],
                [],
                color="black",
                linestyle=_STYLES[i % len(_STYLES)],
                marker=_MARKERS[i % len(_MARKERS)],
                label=method,
            )
            for i, method in enumerate(methods)
        ],
        title="method",
        loc="lower left",
        bbox_to_anchor=(1.01, 0.0),
        fontsize="small",
    )
    warnings = _warnings(document)
    if warnings:
        figure.suptitle(" · ".join(warnings), color="red", fontweight="bold")
    buffer = io.BytesIO()
    # Text stays text in SVG (searchable, smaller) instead of being drawn as glyph paths.
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt)
    return buffer.getvalue()


def write_plot(document: dict, path: Path, axis: str = "flops") -> None:
    """Write the figure to `path`, its format taken from the suffix (.png or .svg)."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"--plot {path}: unknown image type", "name the file .png or .svg")
    path.write_bytes(render_plot(document, fmt, axis))


def _warnings(document: dict) -> list[str]:
    out = []
    if any(r["run"]["simulated"] for r in document["runs"]):
        out.append(SIMULATED_LABEL)
    partial = [r["run"]["ref"] for r in document["runs"] if r["run"]["partial"]]
    if partial:
        out.append(f"PARTIAL: {', '.join(partial)}")
    return out
