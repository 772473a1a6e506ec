"""Accuracy against compute (log x): the picture at the centre of the paper.

One panel per shown selection rule (the document's `rules`), then one panel for pass@N, the
oracle upper bound, titled as such. In each panel: one line per series (method, and policy
model when runs differ) through its points sorted by compute, every point labelled with its
budget and drawn with its 95% bootstrap interval, and the compute-optimal frontier across all
points as a thick grey band behind them. Colour and marker are the series, the same in every
panel. The figure is drawn on a bare `Figure` with the Agg canvas, so no GUI backend and no
pyplot global state are involved.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, PercentFormatter

from rebase_cli.errors import UsageError
from rebase_cli.reports.curves import frontier as compute_frontier
from rebase_cli.reports.labels import SIMULATED_LABEL
from rebase_cli.reports.selection import ORACLE_RULE, RULE_LABELS
from rebase_cli.reports.ticks import compact, log_ticks

FORMATS = ("png", "svg")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_PANEL_SIZE = (5.2, 4.2)


def plot_points(document: dict) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(series, rule) → [(compute, accuracy)] sorted by compute, for every rule shown and
    pass@N; points without compute or accuracy are left out."""
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for point in document["curves"]["points"]:
        if point["x"] is None or point["x"] <= 0:
            continue
        for rule in _panel_rules(document):
            y = point["accuracy"][rule]
            if y is not None:
                lines.setdefault((point["series"], rule), []).append((point["x"], y))
    return {key: sorted(points) for key, points in lines.items()}


def _panel_rules(document: dict) -> list[str]:
    rules = [r for r in document["rules"] if r != ORACLE_RULE]
    return [*rules, ORACLE_RULE]


def render_plot(document: dict, fmt: str = "png") -> bytes:
    """The figure as PNG or SVG bytes. Raises UsageError when no point has compute to plot."""
    if fmt not in FORMATS:
        raise UsageError(f"cannot write a plot as {fmt!r}", "use a .png or .svg file name")
    figure = build_figure(document)
    buffer = io.BytesIO()
    # Text stays text in SVG (searchable, smaller) instead of being drawn as glyph paths.
    with rc_context({"svg.fonttype": "none"}):
        figure.savefig(buffer, format=fmt, bbox_inches="tight", pad_inches=0.15)
    return buffer.getvalue()


def build_figure(document: dict) -> Figure:
    """The figure (module docstring); raises UsageError when no point has compute to plot."""
    curves = document["curves"]
    points = [p for p in curves["points"] if p["x"] is not None and p["x"] > 0]
    if not points:
        raise UsageError("nothing to plot", _nothing_hint(document))
    rules = _panel_rules(document)
    columns = 2 if len(rules) in (2, 4) else min(len(rules), 3)
    rows = math.ceil(len(rules) / columns)
    figure = Figure(
        figsize=(_PANEL_SIZE[0] * columns, _PANEL_SIZE[1] * rows + 0.9),
        dpi=100,
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)
    series = sorted({p["series"] for p in points})
    style = {name: (f"C{i % 10}", _MARKERS[i % len(_MARKERS)]) for i, name in enumerate(series)}
    xs = [p["x"] for p in points]
    low, high = min(xs) / 1.35, max(xs) * 1.35
    for i, axes in enumerate(grid.flat):
        if i >= len(rules):
            axes.set_visible(False)
            continue
        _panel(axes, rules[i], points, series, style, document)
        _x_axis(axes, low, high)
        if i % columns == 0:
            axes.set_ylabel("accuracy")
        if i // columns == rows - 1 or i + columns >= len(rules):
            axes.set_xlabel(curves["x_label"], fontsize="small")
            axes.xaxis.set_tick_params(labelbottom=True)
    handles, labels = grid.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
    figure.suptitle(_title(document, points), fontsize="medium")
    warnings = _warnings(document)
    if warnings:
        # Above the title, in red: a synthetic or partial figure must not pass for a real one.
        figure.text(
            0.5, 1.0, " · ".join(warnings), ha="center", va="bottom",
            color="#c62828", fontweight="bold", fontsize="large",
        )  # fmt: skip
    return figure


def _panel(  # type: ignore[no-untyped-def]
    axes, rule: str, points: list[dict], series: list[str], style, document: dict
) -> None:
    frontier = document["curves"]["frontier"].get(rule)
    if frontier is None:  # pass@N: drawn like the others, but not listed as a result
        frontier = compute_frontier(points, rule)
    if len(frontier) > 1:
        axes.plot(
            [f["x"] for f in frontier],
            [f["accuracy"] for f in frontier],
            color="0.55",
            linewidth=7,
            alpha=0.3,
            solid_capstyle="round",
            label="compute-optimal frontier",
            zorder=1,
        )
    for index, name in enumerate(series):
        mine = sorted(
            (p for p in points if p["series"] == name and p["accuracy"][rule] is not None),
            key=lambda p: p["x"],
        )
        if not mine:
            continue
        colour, marker = style[name]
        ys = [p["accuracy"][rule] for p in mine]
        errors = [
            (y - (p["interval"][rule] or [y, y])[0], (p["interval"][rule] or [y, y])[1] - y)
            for y, p in zip(ys, mine, strict=True)
        ]
        axes.errorbar(
            [p["x"] for p in mine],
            ys,
            yerr=list(zip(*errors, strict=True)),
            color=colour,
            marker=marker,
            markersize=5,
            linewidth=1.6,
            capsize=3,
            elinewidth=0.8,
            ecolor=(*to_rgb(colour), 0.55),
            alpha=0.95,
            label=name,
            zorder=3,
        )
        for p, y in zip(mine, ys, strict=True):
            axes.annotate(
                f"{p['budget']}{'*' if p['subsampled'] else ''}",
                (p["x"], y),
                textcoords="offset points",
                xytext=(6, 4 - 12 * (index % 2)),
                fontsize=7.5,
                fontweight="bold",
                color=colour,
                zorder=4,
                # A white halo keeps the label legible where it crosses an error bar or line.
                path_effects=[withStroke(linewidth=2.5, foreground="white")],
            )
    oracle = rule == ORACLE_RULE
    axes.set_title(
        "pass@N — oracle upper bound, not a selection rule" if oracle else RULE_LABELS[rule],
        fontsize="medium",
        color="0.35" if oracle else "black",
        style="italic" if oracle else "normal",
    )
    axes.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    axes.grid(True, which="major", alpha=0.3)


def _x_axis(axes, low: float, high: float) -> None:  # type: ignore[no-untyped-def]
    axes.set_xscale("log")
    axes.set_xlim(low, high)
    axes.xaxis.set_major_locator(FixedLocator(log_ticks(low, high)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: compact(value)))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _title(document: dict, points: list[dict]) -> str:
    datasets = sorted({r["run"]["dataset"] for r in document["runs"]})
    problems = sorted({p["problems"] for p in points})
    span = str(problems[0]) if len(problems) == 1 else f"{problems[0]}–{problems[-1]}"
    stats = document["statistics"]
    lines = [
        f"Accuracy vs compute · {', '.join(datasets)} · {span} problems per point · "
        f"bars: {round(100 * stats['confidence'])}% bootstrap CI (seed {stats['seed']}) · "
        "labels: budget N (* subsampled)"
    ]
    budgets = {(p["series"], p["budget"]) for p in points}
    if len(budgets) == len({p["series"] for p in points}):
        lines.append(
            "one budget per series: sweep several budgets (--budget 4,8,16,32) to see curves"
        )
    return "\n".join(lines)


def _nothing_hint(document: dict) -> str:
    axis = document["curves"]["x"]
    missing = [r["run"]["ref"] for r in document["runs"] if r["compute"]["flops"]["total"] is None]
    if axis == "flops" and missing:
        return f"FLOPs of {', '.join(missing)} are unknown: pass --policy-params/--reward-params"
    return "the runs have no finished problems yet"


def write_plot(document: dict, path: Path) -> None:
    """Write the figure to `path`, its format taken from the suffix (.png or .svg)."""
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"--plot {path}: unknown image type", "name the file .png or .svg")
    path.write_bytes(render_plot(document, fmt))


def _warnings(document: dict) -> list[str]:
    out = []
    if any(r["run"]["simulated"] for r in document["runs"]):
        out.append(SIMULATED_LABEL)
    partial = [r["run"]["ref"] for r in document["runs"] if r["run"]["partial"]]
    if partial:
        out.append(f"PARTIAL: {', '.join(partial)}")
    return out
