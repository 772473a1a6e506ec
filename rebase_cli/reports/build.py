"""Assemble the report document of one or more runs.

The document is a plain JSON-ready dict described (and validated in tests) by
`report_schema.json`; every renderer (table, markdown, HTML, JSON, plot) reads only it, so
all formats show the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rebase_cli import __version__
from rebase_cli.errors import UsageError
from rebase_cli.records import RunRecord
from rebase_cli.reports.accuracy import (
    accuracy_row,
    answer_table,
    breakdown,
    done_mask,
    subsample_budgets,
    subsampled_rows,
)
from rebase_cli.reports.allocation_view import allocation_rows
from rebase_cli.reports.compute import compute_summary
from rebase_cli.reports.curves import build_curves
from rebase_cli.reports.defaults import DEFAULT_DRAWS, DEFAULT_RULES
from rebase_cli.reports.grading_cache import Progress, grade_pairs
from rebase_cli.reports.labels import APPROXIMATE_TOKENS_LABEL, SIMULATED_LABEL
from rebase_cli.reports.loading import RunData, load_run_data
from rebase_cli.reports.schema import SCHEMA_ID
from rebase_cli.reports.selection import RULES, select
from rebase_cli.reports.servers import server_rows
from rebase_cli.reports.statistics import StatsOptions, paired_comparison
from rebase_cli.runner import reproducibility
from rebase_cli.store.database import Database
from rebase_cli.store.reader import RunReader, run_record

SUBSAMPLED_METHODS = frozenset({"sample"})


@dataclass(frozen=True)
class ReportOptions:
    """Knobs of a report. `subsample_seed` None means the run's own seed."""

    policy_params: float | None = None
    reward_params: float | None = None
    subsample_seed: int | None = None
    subsample_draws: int = DEFAULT_DRAWS
    stats: StatsOptions = field(default_factory=StatsOptions)
    rules: tuple[str, ...] = DEFAULT_RULES
    x_axis: str = "flops"
    scores: str | None = None  # a score set's name: select answers with its scores


@dataclass(frozen=True)
class ProblemOutcomes:
    """Per-problem correctness of a run at its own budget: `indexes` are the dataset indexes
    of its done problems, ascending, and `correct[rule]` is aligned with them."""

    dataset: str
    indexes: np.ndarray
    correct: dict[str, np.ndarray]


def build_report(
    db: Database,
    runs: Sequence[RunRecord],
    options: ReportOptions = ReportOptions(),
    progress: Progress | None = None,
) -> dict:
    """The report document of `runs`, in the order given; two runs over the same problems also
    get a paired comparison."""
    built = [_run_report(db, run_record(run), options, progress) for run in runs]
    comparison = None
    if len(built) == 2:
        comparison = compare_runs(built[0], built[1], options)
    reports = [report for report, _ in built]
    return {
        "schema": SCHEMA_ID,
        "generator": f"rebase {__version__}",
        "statistics": options.stats.describe(),
        "rules": list(options.rules),
        "runs": reports,
        "curves": build_curves(reports, options.x_axis, options.rules),
        "comparison": comparison,
    }


def compare_runs(
    first: tuple[dict, ProblemOutcomes],
    second: tuple[dict, ProblemOutcomes],
    options: ReportOptions,
) -> dict | None:
    """The paired comparison of two runs over the done problems they share (None when they
    are over different datasets or share no done problem)."""
    (report_a, a), (report_b, b) = first, second
    if a.dataset != b.dataset:
        return None
    shared, in_a, in_b = np.intersect1d(a.indexes, b.indexes, return_indices=True)
    if shared.shape[0] == 0:
        return None
    return {
        "a": report_a["run"]["ref"],
        "b": report_b["run"]["ref"],
        "problems": int(shared.shape[0]),
        "a_problems": int(a.indexes.shape[0]),
        "b_problems": int(b.indexes.shape[0]),
        "rules": paired_comparison(
            {rule: a.correct[rule][in_a] for rule in RULES},
            {rule: b.correct[rule][in_b] for rule in RULES},
            shared.tolist(),
            RULES,
            options.stats,
        ),
    }


def build_run_report(
    db: Database, run: RunRecord, options: ReportOptions, progress: Progress | None = None
) -> dict:
    """One run's section of the document (see `_run_report`)."""
    return _run_report(db, run_record(run), options, progress)[0]


def _run_report(
    db: Database, run: RunRecord, options: ReportOptions, progress: Progress | None = None
) -> tuple[dict, ProblemOutcomes]:
    """One run's section of the document: grades its answers through the cache, applies every
    selection rule (and the subsampled budgets of a `sample` run), and adds compute, the
    per-depth view, breakdowns, failures and labels; with the per-problem outcomes."""
    score_set = scores_section(db, run, options.scores)
    data = load_run_data(db, run, score_set["id"] if score_set else None)
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

    rows = [accuracy_row(correct, run.budget, n_counted, stats=options.stats)]
    subsampling = None
    if run.method in SUBSAMPLED_METHODS and run.budget > 1:
        seed = run.seed if options.subsample_seed is None else options.subsample_seed
        budgets = subsample_budgets(run.budget)
        rows = [
            *subsampled_rows(
                table, n_counted, budgets, seed, options.subsample_draws, options.stats
            ),
            *rows,
        ]
        subsampling = {"seed": int(seed), "draws": options.subsample_draws, "budgets": budgets}
    started = compute["problems_started"]
    per_problem_tokens = _per_started(
        compute["policy_prompt_tokens"] + compute["policy_completion_tokens"]
        + compute["reward_tokens"], started
    )  # fmt: skip
    per_problem_seconds = _per_started(compute["problem_seconds"], started)
    for row in rows:
        # Sample paths are independent, so k of N of them cost k/N of the run's compute.
        share = row["budget"] / run.budget
        row["flops_per_problem"] = None if per_problem_flops is None else per_problem_flops * share
        row["tokens_per_problem"] = (
            None if per_problem_tokens is None else per_problem_tokens * share
        )
        row["seconds_per_problem"] = (
            None if per_problem_seconds is None else per_problem_seconds * share
        )
        row["paper_compute_per_problem"] = (
            None if per_problem_paper is None else per_problem_paper * share
        )

    counted_positions = np.flatnonzero(counted)
    subjects = [data.problems.subject[i] for i in counted_positions]
    levels = [data.problems.level[i] for i in counted_positions]
    outcomes = ProblemOutcomes(
        run.dataset, data.problems.index[counted_positions].astype(np.int64), correct
    )
    report = {
        "run": _run_section(run, is_partial(run, data)),
        "labels": _labels(run, data, n_counted) + ([score_set["label"]] if score_set else []),
        "scores": None if score_set is None else {k: v for k, v in score_set.items() if k != "id"},
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
    return report, outcomes


def scores_section(db: Database, run: RunRecord, name: str | None) -> dict | None:
    """The report's account of the score set `name` (None without one). A set that does not
    score every node is refused: its gaps would silently change which answers win."""
    if name is None:
        return None
    reader = RunReader(db)
    score_set = reader.score_set(run.id, name)
    coverage = reader.coverage(score_set.id, run.id)
    if coverage.scored < coverage.total:
        raise UsageError(
            f"score set {name!r} of run-{run.id} scores {coverage.scored} of its "
            f"{coverage.total} nodes",
            f"finish it with: rebase rescore run-{run.id} --reward {score_set.reward_url} "
            f"--reward-protocol {score_set.reward_protocol} --name {name}",
        )
    return {
        "id": score_set.id,
        "name": name,
        "reward_model": score_set.reward_model,
        "reward_protocol": score_set.reward_protocol,
        "original_reward_model": run.reward_model,
        "label": f"RESCORED — answers selected with score set {name!r} ({score_set.reward_model}); "
        f"the tree's shape (which nodes were expanded) came from the original PRM "
        f"({run.reward_model})",
    }


def _per_started(total: float, started: int) -> float | None:
    return None if started == 0 else total / started


def _run_section(run: RunRecord, partial: bool) -> dict:
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


def is_partial(run: RunRecord, data: RunData) -> bool:
    """A run is partial when it is not `done` or some of its problems did not finish."""
    return run.status != "done" or any(s != "done" for s in data.problems.status)


def _labels(run: RunRecord, data: RunData, n_counted: int) -> list[str]:
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
