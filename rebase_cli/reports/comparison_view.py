"""The views that compare runs: accuracy across runs, the compute-optimal frontier and the
paired comparison of two runs, laid out as `sections.TableView`s for every renderer."""

from __future__ import annotations

from rebase_cli.reports.sections import RunView, TableView, percent, with_interval
from rebase_cli.reports.selection import ORACLE_RULE, RULE_LABELS, SHORT_LABELS
from rebase_cli.reports.ticks import compact


def summary_view(document: dict) -> RunView | None:
    """The comparison block shown before the runs (None for a single run without curves)."""
    if len(document["runs"]) < 2:
        return None
    curves = document["curves"]
    tables = [across_runs_table(document)]
    if any(len(points) for points in curves["frontier"].values()):
        tables.append(frontier_table(document))
    comparison = document["comparison"]
    if comparison is not None:
        tables.append(paired_table(comparison, document["rules"]))
        tables.append(flips_table(comparison, document["rules"]))
    labels = sorted({label for report in document["runs"] for label in report["labels"]})
    refs = ", ".join(r["run"]["ref"] for r in document["runs"])
    return RunView(f"Comparison of {refs}", tuple(labels), _facts(document), tuple(tables))


def _facts(document: dict) -> tuple[tuple[str, str], ...]:
    stats = document["statistics"]
    facts = [
        (
            "intervals",
            f"{round(100 * stats['confidence'])}% {stats['interval']}, "
            f"{stats['resamples']} resamples, seed {stats['seed']}",
        ),
        ("compute", document["curves"]["x_label"]),
    ]
    if document["comparison"] is not None:
        facts.append(("paired test", stats["paired_test"]))
    return tuple(facts)


def _shown(document: dict) -> list[str]:
    return [r for r in document["rules"] if r != ORACLE_RULE]


def across_runs_table(document: dict) -> TableView:
    """Rows: every point (run and budget); columns: the shown rules and pass@N."""
    rules = _shown(document)
    points = document["curves"]["points"]
    # The method is the series unless the runs differ in policy model too.
    label = "series" if any(p["series"] != p["method"] for p in points) else "method"
    # One problem count for all rows goes into the note, which keeps the table in 80 columns.
    counts = sorted({p["problems"] for p in points})
    per_row = len(counts) > 1
    columns = (
        "run",
        label,
        "N",
        *(("problems",) if per_row else ()),
        document["curves"]["x"],
        *(SHORT_LABELS[r] for r in rules),
        "pass@N",
    )
    rows = []
    for point in points:
        rows.append(
            (
                point["run"],
                point["series"],
                f"{point['budget']}{'*' if point['subsampled'] else ''}",
                *((str(point["problems"]),) if per_row else ()),
                "—" if point["x"] is None else compact(point["x"]),
                *(with_interval(point["accuracy"][r], point["interval"][r]) for r in rules),
                with_interval(point["accuracy"][ORACLE_RULE], point["interval"][ORACLE_RULE]),
            )
        )
    legend = ", ".join(f"{SHORT_LABELS[r]} = {RULE_LABELS[r]}" for r in rules)
    covered = "" if per_row or not counts else f"every row covers {counts[0]} done problems; "
    note = (
        f"{covered}{legend}; [low–high] = 95% interval; * budget subsampled from a sample run; "
        "pass@N is an oracle upper bound, not a selection rule"
    )
    return TableView("Accuracy across runs", columns, tuple(rows), note, left=3)


def frontier_table(document: dict) -> TableView:
    rows = []
    for rule, points in document["curves"]["frontier"].items():
        for point in points:
            rows.append(
                (
                    RULE_LABELS[rule],
                    point["run"],
                    point["series"],
                    str(point["budget"]),
                    compact(point["x"]),
                    percent(point["accuracy"]),
                )
            )
    return TableView(
        "Compute-optimal frontier",
        ("rule", "run", "series", "N", document["curves"]["x"], "accuracy"),
        tuple(rows),
        "points no other point beats with less or equal compute",
        left=3,
    )


def paired_table(comparison: dict, rules: list[str]) -> TableView:
    shown = [*(r for r in rules if r != ORACLE_RULE), ORACLE_RULE]
    by_rule = {entry["rule"]: entry for entry in comparison["rules"]}
    a, b = comparison["a"], comparison["b"]
    rows = []
    for entry in (by_rule[rule] for rule in shown):
        low, high = entry["interval"] or (None, None)
        rows.append(
            (
                SHORT_LABELS[entry["rule"]],
                percent(entry["accuracy_a"]),
                percent(entry["accuracy_b"]),
                _signed(entry["difference"]),
                "—" if low is None else f"[{100 * low:+.0f}, {100 * high:+.0f}]",
                str(entry["b_only"]),
                str(entry["a_only"]),
                f"{entry['p_value']:.3g}",
            )
        )
    return TableView(
        f"Paired comparison: {b} vs {a}",
        ("rule", a, b, "Δ pts", "95% CI", "only B", "only A", "p"),
        tuple(rows),
        f"{', '.join(f'{SHORT_LABELS[r]} = {RULE_LABELS[r]}' for r in shown)}; "
        f"A = {a}, B = {b}; Δ = B − A in percentage points, over the {comparison['problems']} "
        f"done problems both share ({a}: {comparison['a_problems']}, "
        f"{b}: {comparison['b_problems']}); only A/B: problems right in one run only; "
        "p: exact McNemar test on those",
    )


def flips_table(comparison: dict, rules: list[str]) -> TableView:
    """Which problems (dataset indexes) one run got right and the other wrong, per shown rule."""
    shown = [r for r in rules if r != ORACLE_RULE]
    a, b = comparison["a"], comparison["b"]
    by_rule = {entry["rule"]: entry for entry in comparison["rules"]}
    entries = [by_rule[rule] for rule in shown]
    rows = tuple(
        (RULE_LABELS[e["rule"]], _indexes(e["gained"]), _indexes(e["lost"])) for e in entries
    )
    note = "dataset indexes"
    example = next((e["gained"][0] for e in entries if e["gained"]), None)
    if example is not None:
        note += f"; see a tree with: rebase tree {b} {example}"
    return TableView(
        "Flipped problems", ("rule", f"right only in {b}", f"right only in {a}"), rows, note, left=3
    )


def _indexes(values: list[int], limit: int = 40) -> str:
    if not values:
        return "—"
    shown = ", ".join(map(str, values[:limit]))
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}"
