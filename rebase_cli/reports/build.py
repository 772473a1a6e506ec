"""Assemble the report document of one or more runs.

The document is a plain JSON-ready dict described (and validated in tests) by
`report_schema.json`; every renderer (table, markdown, HTML, JSON, plot) reads only it, so
all formats show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rebase_cli import __version__
from rebase_cli.reports.accuracy import (
    DEFAULT_DRAWS,
    accuracy_row,
    answer_table,
    breakdown,
    done_mask,
    subsample_budgets,
    subsampled_rows,
)
from rebase_cli.reports.allocation_view import allocation_rows
from rebase_cli.reports.compute import compute_summary
from rebase_cli.reports.grading_cache import Progress, grade_pairs
from rebase_cli.reports.labels import APPROXIMATE_TOKENS_LABEL, SIMULATED_LABEL
from rebase_cli.reports.loading import RunData, load_run_data
from rebase_cli.reports.schema import SCHEMA_ID
from rebase_cli.reports.selection import select
from rebase_cli.reports.servers import server_rows
from rebase_cli.runner import reproducibility
from rebase_cli.store.database import Database
from rebase_cli.store.models import Run

SUBSAMPLED_METHODS = frozenset({"sample"})


@dataclass(frozen=True)
class ReportOptions:
    """Knobs of a report. `subsample_seed` None means the run's own seed."""

    policy_params: float | None = None
    reward_params: float | None = None
    subsample_seed: int | None = None
    subsample_draws: int = DEFAULT_DRAWS


def build_report(
    db: Database,
    runs: Sequence[Run],
    options: ReportOptions = ReportOptions(),
    progress: Progress | None = None,
) -> dict:
    """The report document of `runs`, in the order given."""
    return {
        "schema": SCHEMA_ID,
        "generator": f"rebase {__version__}",
        "runs": [build_run_report(db, run, options, progress) for run in runs],
    }


def build_run_report(
    db: Database, run: Run, options: ReportOptions, progress: Progress | None = None
) -> dict:
    """One run's section of the document: grades its answers through the cache, applies every
    selection rule (and the subsampled budgets of a `sample` run), and adds compute, the
    per-depth view, breakdowns, failures and labels."""
    data = load_run_data(db, run)
    counted = done_mask(data)
    pairs = (
        (data.answers.answer[i], data.problems.reference[p])
        for i, p in enumerate(data.answers.problem.tolist())
        if counted[p]
    )
    verdicts, grading = grade_pairs(db, run.dataset, pairs, progress)
    table = answer_table(data, verdicts, counted)
    n_counted = int(counted.sum())
    correct = select(table, n_counted)
    compute = compute_summary(data, options.policy_params, options.reward_params)
    per_problem_flops = compute["flops"]["per_problem"]
    per_problem_paper = compute["paper"]["per_problem"]

    rows = [accuracy_row(correct, run.budget, n_counted)]
    subsampling = None
    if run.method in SUBSAMPLED_METHODS and run.budget > 1:
        seed = run.seed if options.subsample_seed is None else options.subsample_seed
        budgets = subsample_budgets(run.budget)
        rows = [
            *subsampled_rows(table, n_counted, budgets, seed, options.subsample_draws),
            *rows,
        ]
        subsampling = {"seed": int(seed), "draws": options.subsample_draws, "budgets": budgets}
    for row in rows:
        # Sample paths are independent, so k of N of them cost k/N of the run's compute.
        row["flops_per_problem"] = (
            None if per_problem_flops is None else per_problem_flops * row["budget"] / run.budget
        )
        row["paper_compute_per_problem"] = (
            None if per_problem_paper is None else per_problem_paper * row["budget"] / run.budget
        )

    counted_positions = np.flatnonzero(counted)
    subjects = [data.problems.subject[i] for i in counted_positions]
    levels = [data.problems.level[i] for i in counted_positions]
    return {
        "run": _run_section(run, is_partial(run, data)),
        "labels": _labels(run, data, n_counted),
        "problems": _problem_counts(data),
        "accuracy": rows,
        "subsampling": subsampling,
        "compute": compute,
        "allocation": allocation_rows(data),
        "breakdown": {
            "subject": breakdown(correct, subjects),
            "level": breakdown(correct, levels, sort_key=lambda level: int(level)),
        },
        "servers": server_rows(run),
        "failed": [
            {"index": int(data.problems.index[i]), "error": data.problems.error[i] or ""}
            for i, status in enumerate(data.problems.status)
            if status == "failed"
        ],
        "grading": {
            "grader_version": grading.grader_version,
            "pairs": grading.pairs,
            "cached": grading.cached,
            "graded": grading.graded,
            "stored": grading.stored,
        },
    }


def _run_section(run: Run, partial: bool) -> dict:
    return {
        "id": run.id,
        "ref": f"run-{run.id}",
        "name": run.name,
        "method": run.method,
        "dataset": run.dataset,
        "budget": run.budget,
        "status": run.status,
        "simulated": bool(run.simulated),
        "partial": partial,
        "policy_model": run.policy_model,
        "reward_model": run.reward_model,
        "seed": run.seed,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        **reproducibility.read(run.capabilities_json).as_dict(),
    }


def _problem_counts(data: RunData) -> dict:
    statuses = data.problems.status
    done = sum(1 for s in statuses if s == "done")
    failed = sum(1 for s in statuses if s == "failed")
    return {
        "total": len(statuses),
        "done": done,
        "failed": failed,
        "unfinished": len(statuses) - done - failed,
    }


def is_partial(run: Run, data: RunData) -> bool:
    """A run is partial when it is not `done` or some of its problems did not finish."""
    return run.status != "done" or any(s != "done" for s in data.problems.status)


def _labels(run: Run, data: RunData, n_counted: int) -> list[str]:
    labels = []
    if run.simulated:
        labels.append(SIMULATED_LABEL)
    facts = reproducibility.read(run.capabilities_json)
    if facts.reproducible is False:
        labels.append(f"NOT REPRODUCIBLE — {facts.why}")
    if facts.token_counts == "approximate":
        labels.append(APPROXIMATE_TOKENS_LABEL)
    if is_partial(run, data):
        counts = _problem_counts(data)
        labels.append(
            f"PARTIAL — run is {run.status}: accuracy over {n_counted} of {counts['total']} "
            f"problems ({counts['failed']} failed, {counts['unfinished']} unfinished)"
        )
    return labels
