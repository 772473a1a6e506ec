"""The report document laid out as headings, facts and tables of strings.

Text, Markdown and HTML renderers all format these views, so each shows the same rows with the
same number formatting; only the markup differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rebase_cli.reports.selection import RULE_LABELS, RULES, SHORT_LABELS


@dataclass(frozen=True)
class TableView:
    """A titled table: the first `left` columns are labels, the rest right-aligned figures."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str | None = None
    left: int = 1


@dataclass(frozen=True)
class RunView:
    heading: str
    labels: tuple[str, ...]
    facts: tuple[tuple[str, str], ...]
    tables: tuple[TableView, ...]


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """'52.5% [38–66]': an accuracy and its interval in whole percent."""
    if value is None:
        return "—"
    if interval is None:
        return percent(value)
    return f"{percent(value)} [{100 * interval[0]:.0f}–{100 * interval[1]:.0f}]"


def number(value: float | None, digits: int = 3) -> str:
    """Integers with separators, other values with `digits` significant figures."""
    if value is None:
        return "—"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{digits}g}"


def flops(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.3e}"


def run_views(document: dict, details: bool = True) -> list[RunView]:
    """The comparison block (several runs) followed by one block per run (when `details`, or
    when there is a single run)."""
    from rebase_cli.reports.comparison_view import summary_view

    summary = summary_view(document)
    runs = [run_view(report) for report in document["runs"]] if details or not summary else []
    return [summary, *runs] if summary else runs


def run_view(report: dict) -> RunView:
    run = report["run"]
    name = f" ({run['name']})" if run["name"] else ""
    heading = (
        f"{run['ref']}{name} · {run['method']} · {run['dataset']} · budget {run['budget']} · "
        f"{run['status']}"
    )
    tables = [_accuracy_table(report), _compute_table(report), _allocation_table(report)]
    for key, title in (("subject", "Accuracy by subject"), ("level", "Accuracy by level")):
        if report["breakdown"][key]:
            tables.append(_breakdown_table(report["breakdown"][key], title, key))
    if report.get("servers"):
        tables.append(_servers_table(report["servers"]))
    if report["failed"]:
        tables.append(
            TableView(
                "Failed problems",
                ("problem", "error"),
                tuple((str(f["index"]), f["error"]) for f in report["failed"]),
                left=2,
            )
        )
    return RunView(heading, tuple(report["labels"]), _facts(report), tuple(tables))


def _facts(report: dict) -> tuple[tuple[str, str], ...]:
    run, problems, grading = report["run"], report["problems"], report["grading"]
    flop = report["compute"]["flops"]
    facts = [
        ("policy", _model_fact(flop["policy"])),
        ("reward", _model_fact(flop["reward"])),
        (
            "problems",
            f"{problems['total']} total: {problems['done']} done, {problems['failed']} failed, "
            f"{problems['unfinished']} unfinished",
        ),
        (
            "grading",
            f"grader {grading['grader_version']}: {grading['pairs']} distinct answers, "
            f"{grading['cached']} cached, {grading['graded']} graded now"
            + ("" if grading.get("stored", True) else " (not cached: the database is read-only)"),
        ),
        ("seed", str(run["seed"])),
    ]
    if report["subsampling"]:
        sub = report["subsampling"]
        facts.append(
            (
                "subsampling",
                f"budgets {', '.join(map(str, sub['budgets']))} drawn from the run's answers, "
                f"seed {sub['seed']}, mean of {sub['draws']} draws",
            )
        )
    return tuple(facts)


def _model_fact(entry: dict) -> str:
    if entry["params"] is None:
        params = "parameters unknown (pass --policy-params/--reward-params)"
    else:
        params = f"{entry['params']:.3g} parameters from {entry['params_source']}"
    return f"{entry['model'] or '—'} · {params}"


def _accuracy_table(report: dict) -> TableView:
    rows = report["accuracy"]
    columns = ("rule", *(f"N={r['budget']}{'*' if r['subsampled'] else ''}" for r in rows))
    body = [
        (
            RULE_LABELS[rule],
            *(with_interval(r["accuracy"][rule], r["interval"][rule]) for r in rows),
        )
        for rule in RULES
    ]
    body.append(("FLOPs / problem", *(flops(r["flops_per_problem"]) for r in rows)))
    body.append(
        (
            "policy gen. tokens / problem",
            *(number(r.get("paper_compute_per_problem")) for r in rows),
        )
    )
    done = rows[-1]["problems"]
    note = f"accuracy over {done} done problems [95% bootstrap interval]"
    if any(r["subsampled"] for r in rows):
        note += "; * subsampled from the run's answers"
    return TableView("Accuracy", columns, tuple(body), note)


def _compute_table(report: dict) -> TableView:
    c = report["compute"]
    f = c["flops"]
    rows = (
        ("policy prompt tokens", number(c["policy_prompt_tokens"])),
        ("policy completion tokens", number(c["policy_completion_tokens"])),
        ("reward tokens", number(c["reward_tokens"])),
        ("policy requests", number(c["policy_requests"])),
        ("reward requests", number(c["reward_requests"])),
        ("retries", number(c["retries"])),
        ("wall time (s)", number(round(c["wall_seconds"], 1))),
        ("problem time, summed (s)", number(round(c["problem_seconds"], 1))),
        ("nodes per problem", number(c["nodes_per_problem"])),
        ("finished answers per problem", number(c["answers_per_problem"])),
        ("policy FLOPs", flops(f["policy"]["flops"])),
        ("reward FLOPs", flops(f["reward"]["flops"])),
        ("total FLOPs", flops(f["total"])),
        ("FLOPs per problem", flops(f["per_problem"])),
        ("paper compute per problem", number(c["paper"]["per_problem"])),
    )
    return TableView(
        "Compute",
        ("", "value"),
        rows,
        f"FLOPs = 2 × parameters × tokens; per problem over {c['problems_started']} started",
    )


def _allocation_table(report: dict) -> TableView:
    columns = (
        "depth",
        "problems",
        "nodes",
        "terminal",
        "answers",
        "open",
        "expanded",
        "pruned",
        "children",
    )
    rows = tuple(tuple(str(row[c]) for c in columns) for row in report["allocation"])
    return TableView(
        "Search per depth",
        columns,
        rows,
        "totals over problems; open/expanded/pruned/children are the allocation decided at "
        "that depth",
    )


def _servers_table(rows: list[dict]) -> TableView:
    columns = ("role", "server", "requests", "failed attempts", "tokens", "outages", "moved away")
    body = tuple(
        (
            row["role"],
            row["url"],
            *(number(row[k]) for k in ("requests", "failed_attempts", "tokens", "outages")),
            number(row["problems_moved_away"]),
        )
        for row in rows
    )
    return TableView(
        "Servers",
        columns,
        body,
        "latest session; failed attempts were retried; moved away: problems moved off a "
        "server after an outage",
        left=2,
    )


def _breakdown_table(rows: list[dict], title: str, key: str) -> TableView:
    columns = (key, "problems", *(SHORT_LABELS[rule] for rule in RULES))
    body = tuple(
        (row["key"], str(row["problems"]), *(percent(row["accuracy"][rule]) for rule in RULES))
        for row in rows
    )
    return TableView(title, columns, body)
