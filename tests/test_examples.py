"""The shipped example configs are valid, and the simulator one runs as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.prompts import load_template
from rebase_cli.runner.config import build_config, load_config_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_config_builds_with_a_shipped_template(path: Path) -> None:
    config = build_config(load_config_file(path), str(path))
    assert load_template(config.template).name == config.template


def test_simulator_example_runs_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "examples.db"
    result = CliRunner().invoke(
        app,
        ["--db", str(db), "search", "--dataset", "gsm8k", "--config",
         str(EXAMPLES / "simulator.yaml"), "--limit", "3", "--policy", "sim", "--reward", "sim",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["failed"]) == (3, 0)
    # Every path of the example's budget (16) ends in an answer on the simulator, whose policy
    # always finishes within the default depth and token limits.
    assert summary["finished_answers"] == 3 * 16


def test_reference_profile_example_runs_with_the_authors_template(tmp_path: Path) -> None:
    db = tmp_path / "reference.db"
    result = CliRunner().invoke(
        app,
        ["--db", str(db), "search", "--dataset", "gsm8k", "--config",
         str(EXAMPLES / "reference-profile.yaml"), "--limit", "2", "--policy", "sim",
         "--reward", "sim", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = build_config(load_config_file(EXAMPLES / "reference-profile.yaml"))
    assert (config.profile, config.template, config.budget) == ("reference", "authors-llemma", 16)
    summary = json.loads(result.stdout)
    assert (summary["done"], summary["finished_answers"]) == (2, 2 * 16)
