"""Render an HTML report and screenshot it with headless Chromium.

Without --db it builds a demo database first: four simulated REBASE runs over the first 200
GSM8K problems at budgets 8, 16, 32 and 64 (written with the benchmark's bulk builder), so the
plot has a line with four points. It then runs `rebase report ... --output report.html`, opens
the file in Chromium (Debian package `chromium`) and writes a screenshot, and checks that the
screenshot is not blank. Look at the PNG to see the tables and the plot.

    REBASE_DATA_DIR=../shared/data python scripts/check_html_report.py [--out DIR]
    python scripts/check_html_report.py --db runs.db run-1 run-2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def build_demo(db_path: Path) -> list[str]:
    spec = importlib.util.spec_from_file_location(
        "bench_report", ROOT / "benchmarks" / "bench_report.py"
    )
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    runs = []
    for budget in (8, 16, 32, 64):
        run_id, _, _ = bench.build_run(db_path, 200, budget, name=f"demo-{budget}", simulated=True)
        runs.append(f"run-{run_id}")
    return runs


def screenshot(html: Path, png: Path, chromium: str) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                "--window-size=1280,2000",
                html.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
    if done.returncode != 0 or not png.exists():
        raise SystemExit(f"chromium failed ({done.returncode}): {done.stderr.strip()[-800:]}")


def is_blank(png: Path) -> bool:
    """True when every pixel has the same colour."""
    from matplotlib.image import imread

    pixels = imread(str(png))
    return bool((pixels == pixels[0, 0]).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="*", help="runs to report (default: build a demo)")
    parser.add_argument("--db", type=Path, help="an existing database (default: a demo one)")
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="html-report-")))
    args = parser.parse_args()
    os.environ.setdefault("REBASE_DATA_DIR", str(ROOT.parent / "shared" / "data"))
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install -y chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    db_path = args.db or args.out / "demo.db"
    runs = args.runs or (["latest"] if args.db else build_demo(db_path))
    html, png = args.out / "report.html", args.out / "report.png"
    command = [sys.executable, "-m", "rebase_cli", "--db", str(db_path), "report", *runs]
    subprocess.run([*command, "--output", str(html)], check=True)
    screenshot(html, png, chromium)
    if is_blank(png):
        raise SystemExit(f"{png} is blank: the page did not render")
    print(f"report: {html} ({html.stat().st_size / 1024:.0f} KiB)")
    print(f"screenshot: {png} ({png.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
