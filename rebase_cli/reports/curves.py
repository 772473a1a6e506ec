"""Accuracy-vs-compute points of several runs, their series and the compute-optimal frontier.

A point is one accuracy row of one run: the run's own budget, or a smaller budget subsampled
from a `sample` run. Points are grouped into series by method, and also by policy model when
the runs do not all share one. Where a series has a real run at some budget, subsampled points
at that budget are dropped (the real run measures it).

The compute-optimal frontier of a rule is the set of points that no other point dominates: a
point is on it when every point with less or equal compute has lower accuracy. Walking the
points by increasing compute (ties: higher accuracy first), a point joins the frontier when
its accuracy is strictly above every accuracy seen before.
"""

from __future__ import annotations

from collections.abc import Sequence

from rebase_cli.reports.compute import COMPUTE_AXES


def series_label(run: dict, by_model: bool) -> str:
    """The series a run's points belong to: its method, plus its policy model if asked."""
    if not by_model:
        return run["method"]
    model = (run["policy_model"] or "unknown model").rsplit("/", 1)[-1]
    return f"{run['method']} · {model}"


def build_curves(reports: Sequence[dict], x_axis: str, rules: Sequence[str]) -> dict:
    """The `curves` section of the report document (see report_schema.json)."""
    key, label = COMPUTE_AXES[x_axis]
    by_model = len({r["run"]["policy_model"] for r in reports}) > 1
    points = []
    for report in reports:
        run = report["run"]
        for row in report["accuracy"]:
            points.append(
                {
                    "run": run["ref"],
                    "series": series_label(run, by_model),
                    "method": run["method"],
                    "policy_model": run["policy_model"],
                    "budget": row["budget"],
                    "subsampled": row["subsampled"],
                    "problems": row["problems"],
                    "x": row[key],
                    "accuracy": row["accuracy"],
                    "interval": row["interval"],
                }
            )
    points = _drop_shadowed(points)
    points.sort(key=lambda p: (p["series"], p["x"] is None, p["x"] or 0.0, p["budget"]))
    return {
        "x": x_axis,
        "x_label": label,
        "points": points,
        "frontier": {rule: frontier(points, rule) for rule in rules},
    }


def _drop_shadowed(points: list[dict]) -> list[dict]:
    measured = {(p["series"], p["budget"]) for p in points if not p["subsampled"]}
    seen: set[tuple[str, int]] = set()
    kept = []
    for point in points:
        key = (point["series"], point["budget"])
        if point["subsampled"] and (key in measured or key in seen):
            continue
        seen.add(key)
        kept.append(point)
    return kept


def frontier(points: Sequence[dict], rule: str) -> list[dict]:
    """The frontier of `rule` over the points with known compute and accuracy (docstring)."""
    known = [p for p in points if p["x"] is not None and p["accuracy"][rule] is not None]
    known.sort(key=lambda p: (p["x"], -p["accuracy"][rule]))
    out: list[dict] = []
    best = float("-inf")
    for point in known:
        if point["accuracy"][rule] > best:
            best = point["accuracy"][rule]
            out.append(
                {
                    "run": point["run"],
                    "series": point["series"],
                    "budget": point["budget"],
                    "x": point["x"],
                    "accuracy": best,
                }
            )
    return out
