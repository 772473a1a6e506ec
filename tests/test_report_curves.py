"""Curves across runs: series, the compute-optimal frontier, tick labels and the figure."""

from __future__ import annotations

import copy
import io
import itertools

import pytest
from matplotlib.image import imread

from rebase_cli.reports.build import ReportOptions, build_report
from rebase_cli.reports.curves import frontier
from rebase_cli.reports.plot import build_figure, render_plot
from rebase_cli.reports.schema import validate_report
from rebase_cli.reports.ticks import MAX_TICKS, compact, log_ticks
from rebase_cli.store.database import Database
from tests.test_report_builders import add_tree, make_run, node


def _point(run: str, x: float | None, accuracy: float, budget: int = 4) -> dict:
    return {"run": run, "series": "s", "budget": budget, "x": x, "accuracy": {"r": accuracy}}


def test_frontier_keeps_points_nothing_cheaper_beats() -> None:
    points = [
        _point("run-1", 10.0, 0.5),
        _point("run-2", 20.0, 0.4),  # dominated by run-1: more compute, less accuracy
        _point("run-3", 20.0, 0.7),
        _point("run-4", 40.0, 0.7),  # ties run-3 at more compute: not on the frontier
        _point("run-5", 80.0, 0.9),
        _point("run-6", None, 1.0),  # compute unknown: cannot be placed
        _point("run-7", 5.0, 0.5),  # cheaper than run-1 at the same accuracy: run-1 drops
    ]
    assert [p["run"] for p in frontier(points, "r")] == ["run-7", "run-3", "run-5"]


@pytest.mark.parametrize(
    ("low", "high"),
    [(3e13, 4e13), (3.1e13, 3.3e13), (1.3e13, 8.6e13), (1e3, 1e15), (0.2, 3.0), (12.0, 12.5)],
)
def test_log_ticks_are_few_inside_and_distinctly_labelled(low: float, high: float) -> None:
    ticks = log_ticks(low, high)
    assert 2 <= len(ticks) <= MAX_TICKS
    assert all(low * (1 - 1e-9) <= t <= high * (1 + 1e-9) for t in ticks)
    labels = [compact(t) for t in ticks]
    assert len(set(labels)) == len(labels)


def test_compact_labels() -> None:
    assert [compact(v) for v in (2e13, 5e5, 0.5, 12, 1.5e9)] == ["20T", "500k", "0.5", "12", "1.5G"]


def _sweep_document(db: Database) -> dict:
    """Three rebase budgets and one sample run, all over the same two problems."""
    runs = []
    for budget in (2, 4, 8):
        run = make_run(db, budget=budget)
        add_tree(db, run, 0, "1", [node(0.9, answer="1")] * min(budget, 2))
        add_tree(db, run, 1, "2", [node(0.9, answer="2" if budget > 2 else "3")])
        runs.append(run)
    sample = make_run(db, method="sample", budget=4)
    for index in (0, 1):
        add_tree(db, sample, index, "1", [node(0.5, node(0.5, answer=a)) for a in "1213"])
    runs.append(sample)
    return build_report(db, runs, ReportOptions(policy_params=1e9, reward_params=1e9))


def test_curves_and_frontier_in_the_document(db: Database) -> None:
    document = _sweep_document(db)
    validate_report(document)
    curves = document["curves"]
    assert curves["x"] == "flops"
    budgets = [(p["series"], p["budget"], p["subsampled"]) for p in curves["points"]]
    assert budgets == [
        ("rebase", 2, False),
        ("rebase", 4, False),
        ("rebase", 8, False),
        ("sample", 1, True),
        ("sample", 2, True),
        ("sample", 4, False),
    ]
    for point in curves["points"]:
        low, high = point["interval"]["majority"]
        assert low <= point["accuracy"]["majority"] <= high
    assert set(curves["frontier"]) == {"weighted_last", "majority", "best_of_n_last"}
    # The frontier is increasing in both compute and accuracy.
    for points in curves["frontier"].values():
        xs = [p["x"] for p in points]
        ys = [p["accuracy"] for p in points]
        assert xs == sorted(xs) and ys == sorted(set(ys))


def test_tokens_axis(db: Database) -> None:
    run = make_run(db, budget=2)
    add_tree(db, run, 0, "1", [node(0.9, answer="1")])
    document = build_report(db, [run], ReportOptions(x_axis="tokens"))
    (point,) = document["curves"]["points"]
    # One problem, one level: 100 prompt + 40 completion + 20 reward tokens.
    assert point["x"] == 160 and document["curves"]["x"] == "tokens"


def test_figure_has_a_panel_per_rule_readable_ticks_and_labelled_points(db: Database) -> None:
    document = _sweep_document(db)
    # Squeeze every point into less than a decade: where default log labels collide.
    narrow = copy.deepcopy(document)
    for i, point in enumerate(narrow["curves"]["points"]):
        point["x"] = 3.0e13 + i * 2e12
    for rule in narrow["curves"]["frontier"]:
        narrow["curves"]["frontier"][rule] = frontier(narrow["curves"]["points"], rule)
    figure = build_figure(narrow)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = [a for a in figure.axes if a.get_visible()]
    titles = [a.get_title() for a in panels]
    assert titles[:3] == ["weighted vote (last)", "majority vote", "best-of-N (last)"]
    assert titles[3].startswith("pass@N — oracle")
    labelled = 0
    for axes in panels:
        # Panels share x: only the bottom row draws tick labels.
        boxes = [
            label.get_window_extent(renderer)
            for label in axes.get_xticklabels()
            if label.get_visible()
            and label.get_text()
            and axes.xaxis.get_tick_params()["labelbottom"]
        ]
        if boxes:
            labelled += 1
            assert len(boxes) >= 2
            boxes.sort(key=lambda b: b.x0)
            assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes)), axes.get_title()
        texts = {t.get_text() for t in axes.texts}
        assert {"2", "4", "8", "1*", "2*"} <= texts  # every point carries its budget
    assert labelled == 2
    legend = {t.get_text() for t in figure.legends[0].get_texts()}
    assert {"rebase", "sample", "compute-optimal frontier"} <= legend


def test_png_is_a_real_image(db: Database) -> None:
    png = render_plot(_sweep_document(db), "png")
    image = imread(io.BytesIO(png), format="png")
    height, width = image.shape[:2]
    assert width >= 800 and height >= 600
    # Not blank: a good share of pixels differ from the white background.
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.02
