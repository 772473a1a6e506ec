"""Run set-up: new runs, `--resume` by fingerprint, `--run` with a changed config or template."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebase_cli import prompts
from rebase_cli.datasets import load_dataset
from rebase_cli.errors import ConfigError
from rebase_cli.runner import setup
from rebase_cli.runner.setup import Endpoints, RunRequest
from rebase_cli.store.database import Database
from rebase_cli.store.problems import problems_of_run
from rebase_cli.store.runs import resolve_run

ENDPOINTS = Endpoints("http://p", "sim-policy", "http://r", "sim-prm")


def prepare_run(db: Database, request: RunRequest, endpoints: Endpoints):
    """The set-up as `rebase search` does it: the named dataset, or the run's own."""
    name = request.dataset or resolve_run(db, request.run_ref or "").dataset
    return setup.prepare_run(db, request, endpoints, load_dataset(name))


def test_new_run_registers_the_limited_problems(db: Database) -> None:
    prepared = prepare_run(db, RunRequest("gsm8k", {"budget": 4, "limit": 3}), ENDPOINTS)
    assert not prepared.resumed and prepared.run.simulated
    assert [p.dataset_index for p in problems_of_run(db, prepared.run.id)] == [0, 1, 2]


def test_resume_finds_the_run_with_the_same_fingerprint_and_keeps_its_limit(db) -> None:
    first = prepare_run(db, RunRequest("gsm8k", {"budget": 4, "limit": 3}), ENDPOINTS)
    again = prepare_run(db, RunRequest("gsm8k", {"budget": 4}, resume=True), ENDPOINTS)
    assert again.resumed and again.run.id == first.run.id and again.config.limit == 3
    other = prepare_run(db, RunRequest("gsm8k", {"budget": 8}, resume=True), ENDPOINTS)
    assert not other.resumed and other.run.id != first.run.id


def test_run_with_other_values_is_refused_with_the_differing_keys(db: Database) -> None:
    first = prepare_run(db, RunRequest("gsm8k", {"budget": 4, "limit": 2}), ENDPOINTS)
    request = RunRequest(None, {"budget": 8, "seed": 3}, run_ref=f"run-{first.run.id}")
    with pytest.raises(ConfigError) as caught:
        prepare_run(db, request, ENDPOINTS)
    assert "budget: 4 → 8; seed: 0 → 3" in caught.value.one_line()


def test_a_template_edited_since_the_run_started_is_refused(db, tmp_path: Path) -> None:
    template = tmp_path / "mine.yaml"
    template.write_text('name: mine\nprompt: "Q: {question}\\n"\nstep_delimiter: "\\n"\n')
    overrides = {"budget": 4, "limit": 2, "template": str(template)}
    first = prepare_run(db, RunRequest("gsm8k", overrides), ENDPOINTS)
    template.write_text('name: mine\nprompt: "Question: {question}\\n"\nstep_delimiter: "\\n"\n')
    prompts._load_template.cache_clear()  # a new process would read the file afresh
    with pytest.raises(ConfigError, match="changed since run-"):
        prepare_run(db, RunRequest(None, {}, run_ref=f"run-{first.run.id}"), ENDPOINTS)
    resumed = prepare_run(db, RunRequest("gsm8k", overrides, resume=True), ENDPOINTS)
    assert not resumed.resumed  # the edited template is another experiment: a new run
