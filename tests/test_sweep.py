"""Sweeps end to end: `rebase search --budget 2,4,8` on the simulator as a group of runs,
SIGKILLed in the middle, finished with `rebase search --group NAME`, then reported as one
figure, one JSON document and one self-contained HTML file."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib.image import imread

from rebase_cli.reports.schema import validate_report
from tests.search_helpers import (
    KILLED,
    diff_runs,
    dump_run,
    integrity,
    node_count,
    query,
    rebase,
    start_rebase,
    start_simulator,
    wait_until,
)

BUDGETS = (2, 4, 8)
LIMIT = 6


@pytest.fixture(scope="module")
def slow_sim():
    with start_simulator("--base-ms", "40") as simulator:
        yield simulator


def _sweep_args(url: str, group: str) -> list[str]:
    return [
        "search", "--dataset", "gsm8k", "--budget", ",".join(map(str, BUDGETS)),
        "--limit", str(LIMIT), "--seed", "3", "--concurrency", "2",
        "--policy", url, "--reward", url, "--group", group,
    ]  # fmt: skip


def _group_runs(db: Path, group: str) -> list[tuple[int, int, str]]:
    return query(
        db, "SELECT id, budget, status FROM run WHERE group_name = ? ORDER BY id", (group,)
    )


def _png_ok(data: bytes) -> tuple[int, int]:
    image = imread(io.BytesIO(data), format="png")
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.02, "the image is blank"
    return image.shape[1], image.shape[0]


class _Page(HTMLParser):
    """Images, external references and table count of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.external: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values.get("src") or "")
        if tag == "table":
            self.tables += 1
        for key in ("src", "href"):
            value = values.get(key) or ""
            if value and not value.startswith("data:"):
                self.external.append(value)


def test_three_budget_sweep_killed_and_resumed_then_reported(slow_sim, tmp_path: Path) -> None:
    url = slow_sim.url
    # Reference: the same sweep, uninterrupted.
    reference = tmp_path / "reference.db"
    done = rebase(reference, *_sweep_args(url, "ref"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [(b, s) for _, b, s in _group_runs(reference, "ref")] == [(b, "done") for b in BUDGETS]

    db = tmp_path / "rebase.db"
    child = start_rebase(db, *_sweep_args(url, "g"), logs=tmp_path / "logs")
    # Kill inside the second run, once it has committed something.
    child.wait_for("[2/3]", timeout=120)
    wait_until(lambda: len(_group_runs(db, "g")) == 2 and node_count(db, 2) > 0, timeout=120)
    assert child.kill() == KILLED
    assert integrity(db) == "ok"
    killed = _group_runs(db, "g")
    assert [(b, s) for _, b, s in killed] == [(2, "done"), (4, "running")]

    # The group name alone finishes the sweep: run-2 continues, run-3 is created.
    resumed = rebase(db, "search", "--group", "g", timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming run-2 of group g" in resumed.stdout
    runs = _group_runs(db, "g")
    assert [(i, b, s) for i, b, s in runs] == [(1, 2, "done"), (2, 4, "done"), (3, 8, "done")]
    for (ref_id, _, _), (run_id, _, _) in zip(_group_runs(reference, "ref"), runs, strict=True):
        assert diff_runs(dump_run(reference, ref_id), dump_run(db, run_id)) == []

    listed = rebase(db, "runs", "--json")
    assert {r["run"]: r["group"] for r in json.loads(listed.stdout)} == {
        "run-1": "g", "run-2": "g", "run-3": "g",
    }  # fmt: skip

    plot, html = tmp_path / "sweep.png", tmp_path / "sweep.html"
    report = rebase(db, "report", "g", "--format", "json", "--plot", str(plot))
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    validate_report(document)
    points = document["curves"]["points"]
    assert [(p["run"], p["budget"]) for p in points] == [
        ("run-1", 2), ("run-2", 4), ("run-3", 8),
    ]  # fmt: skip
    xs = [p["x"] for p in points]
    assert xs == sorted(xs) and xs[0] > 0
    for point in points:
        assert point["problems"] == LIMIT
        for rule, (low, high) in point["interval"].items():
            assert low <= point["accuracy"][rule] <= high
    frontier = document["curves"]["frontier"]["weighted_last"]
    assert frontier and frontier[0]["run"] == "run-1"
    assert {(f["run"], f["budget"]) for f in frontier} <= {(p["run"], p["budget"]) for p in points}

    width, height = _png_ok(plot.read_bytes())
    assert width >= 800 and height >= 600

    written = rebase(db, "report", "g", "--output", str(html))
    assert written.returncode == 0, written.stderr
    page = _Page()
    page.feed(html.read_text(encoding="utf-8"))
    assert page.external == [] and page.tables >= 3
    (image,) = page.images
    embedded = base64.b64decode(re.sub(r"^data:image/png;base64,", "", image))
    _png_ok(embedded)
    assert "Compute-optimal frontier" in html.read_text(encoding="utf-8")


def _invoke(db: Path, *args: str):
    from typer.testing import CliRunner

    from rebase_cli.cli.app import app

    return CliRunner().invoke(app, ["--db", str(db), *args])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--budget", "4,x"], 2, "--budget '4,x': not a list of integers"),
        (["--budget", "4,,8"], 2, "--budget '4,,8': empty item"),
        (["--budget", "0,4"], 1, "invalid budget=0"),
        (["--budget", "4,8", "--name", "n"], 2, "--run and --name name one run, not a sweep"),
        (["--method", "rebase,mcts", "--budget", "4"], 1, "invalid method='mcts'"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_is_stored(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    db = tmp_path / "r.db"
    result = _invoke(
        db, "search", "--dataset", "gsm8k", *args, "--policy", "sim", "--reward", "sim"
    )
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not db.exists() or query(db, "SELECT count(*) FROM run_group") == [(0,)]


def test_group_names_one_plan(tmp_path: Path) -> None:
    from rebase_cli.store.database import Database
    from rebase_cli.store.groups import save_group

    db = tmp_path / "r.db"
    missing = _invoke(db, "search", "--group", "nope")
    assert missing.exit_code == 2 and "no group 'nope'" in missing.stderr
    store = Database.open(db)
    spec = {"dataset": "gsm8k", "methods": [None], "budgets": [2, 4], "overrides": {}}
    save_group(store, "g", spec)
    assert save_group(store, "g", dict(spec)).name == "g"  # the same plan: the same group
    store.close()
    other = _invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "2,8", "--group", "g",
        "--policy", "sim", "--reward", "sim",
    )  # fmt: skip
    assert other.exit_code == 1
    assert "group 'g' was started with another sweep" in other.stderr
    assert f"rebase --db {db} search --group g" in other.stderr
