"""Crash/resume torture, the long version of tests/test_resume_torture.py.

    REBASE_DATA_DIR=../shared/data python benchmarks/torture.py [--problems 100] [--budget 8]
        [--kills 30] [--seed 1] [--base-ms 150] [--concurrency 8] [--delay 0.1,1.0]
        [--report-kills 5] [--migration-kills 20] [--keep DIR] [--json]

1. Reference: `rebase search` over the first `--problems` GSM8K problems against a simulator
   with latency off, uninterrupted.
2. Torture: the same search against a simulator that answers each request after `--base-ms`
   (so the run spans enough wall time), SIGKILLed `--kills` times at seeded random moments
   (`--delay` seconds after it announced its run) and resumed with `--run` each time;
   `PRAGMA integrity_check` after every kill. The final database must equal the reference:
   node texts, scores, parents, token counts, answers, allocations and problem rows.
3. `rebase report --format json` SIGKILLed `--report-kills` times while it grades and fills
   the grade cache; then an uninterrupted report must equal one made on an untouched copy.
4. A process creating a brand-new database SIGKILLed `--migration-kills` times during the open
   (migration); the file must then be empty or at the head revision, and open fine.

Prints the kills, resumes, wall times and the verdict (exit status 1 on any divergence).
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The kill/resume machinery and the independent SQLite dump live with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rebase_cli.store.database import Database
from rebase_cli.store.migrate import head_revision
from tests.search_helpers import (
    TortureResult,
    check_allocations,
    cli_env,
    copy_db,
    diff_runs,
    dump_run,
    integrity,
    kill_and_resume,
    query,
    rebase,
    search_args,
    start_rebase,
    start_simulator,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", type=int, default=100)
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill moments")
    parser.add_argument("--base-ms", type=float, default=150.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delay", default="0.1,1.0", help="min,max seconds before a kill")
    parser.add_argument("--report-kills", type=int, default=5)
    parser.add_argument("--migration-kills", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in DIR and keep the databases")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    return parser.parse_args()


def reference(folder: Path, args: argparse.Namespace) -> tuple[Path, float]:
    db = folder / "reference.db"
    started = time.monotonic()
    with start_simulator() as sim:
        done = rebase(
            db,
            *search_args(sim.url, budget=args.budget, limit=args.problems, concurrency=32),
            timeout=3600,
        )
    if done.returncode != 0:
        sys.exit(f"reference run failed:\n{done.stdout}\n{done.stderr}")
    return db, time.monotonic() - started


def torture(folder: Path, args: argparse.Namespace) -> tuple[Path, TortureResult]:
    db = folder / "tortured.db"
    low, high = (float(x) for x in args.delay.split(","))

    def progress(result: TortureResult) -> None:
        print(
            f"  kill {result.kills:3d} after {result.kill_delays[-1]:.2f} s: "
            f"{result.nodes_at_kill[-1]:6d} nodes committed, integrity {result.integrity[-1]}",
            file=sys.stderr,
            flush=True,
        )

    with start_simulator("--base-ms", str(args.base_ms)) as sim:
        result = kill_and_resume(
            db,
            search_args(
                sim.url, budget=args.budget, limit=args.problems, concurrency=args.concurrency
            ),
            lambda run: ["search", "--run", f"run-{run}", "--policy", sim.url, "--reward", sim.url],
            kills=args.kills,
            rng=random.Random(args.seed),
            delay=(low, high),
            logs=folder / "logs",
            on_kill=progress,
        )
    return db, result


def report_kills(folder: Path, source: Path, count: int, seed: int) -> dict:
    def report(db: Path) -> dict:
        done = rebase(db, "report", "run-1", "--format", "json", timeout=600)
        if done.returncode != 0:
            sys.exit(f"report failed: {done.stderr}")
        document = json.loads(done.stdout)
        for run in document["runs"]:
            run.pop("grading", None)
        return document

    pristine = copy_db(source, folder / "report-pristine.db")
    started = time.monotonic()
    expected = report(pristine)
    full = time.monotonic() - started
    db = copy_db(source, folder / "report-killed.db")
    rng = random.Random(seed)
    checks = []
    for _ in range(count):
        child = start_rebase(db, "report", "run-1", "--format", "json", logs=folder / "logs")
        time.sleep(rng.uniform(0.2, full))
        child.kill()
        checks.append(integrity(db))
    grades = "SELECT grader_version, dataset, reference, answer, correct FROM grade"
    grades += " ORDER BY grader_version, dataset, reference, answer"
    same = report(db) == expected and query(db, grades) == query(pristine, grades)
    return {"kills": count, "report_seconds": round(full, 2), "integrity": checks, "equal": same}


OPEN_NEW_DATABASE = (
    "import sys; from pathlib import Path; from rebase_cli.store.database import Database; "
    "print('ready', flush=True); Database.open(Path(sys.argv[1])); print('opened', flush=True)"
)


def migration_kills(folder: Path, count: int, seed: int) -> dict:
    rng = random.Random(seed)
    states: dict[str, int] = {}
    problems: list[str] = []
    interrupted = 0
    for attempt in range(count):
        path = folder / f"new-{attempt}.db"
        child = subprocess.Popen(
            [sys.executable, "-c", OPEN_NEW_DATABASE, str(path)],
            env=cli_env(path),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert child.stdout is not None
        child.stdout.readline()  # "ready": imports done, the open starts now
        time.sleep(rng.uniform(0, 0.1))
        child.kill()
        out, _ = child.communicate(timeout=30)
        interrupted += "opened" not in out
        state = "missing"
        if path.exists():
            if (check := integrity(path)) != "ok":
                problems.append(f"{path.name}: {check}")
            tables = {r[0] for r in query(path, "SELECT name FROM sqlite_master")}
            version = query(path, "SELECT version_num FROM alembic_version") if tables else []
            state = "empty" if not tables else ("head" if version == [(head_revision(),)] else "")
            if not state:
                problems.append(f"{path.name}: half migrated ({sorted(tables)})")
                state = "half"
        states[state] = states.get(state, 0) + 1
        try:
            Database.open(path).close()
        except Exception as exc:  # what a user would see on the next command
            problems.append(f"{path.name}: reopening failed: {exc}")
    return {
        "kills": count,
        "interrupted_opens": interrupted,
        "states": states,
        "problems": problems,
    }


def main() -> int:
    args = parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="rebase-torture-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"reference: {args.problems} problems, budget {args.budget} ...", file=sys.stderr)
    ref_db, ref_seconds = reference(folder, args)
    expected = dump_run(ref_db, 1)
    print(f"torture: {args.kills} kills ...", file=sys.stderr)
    db, result = torture(folder, args)
    actual = dump_run(db, result.run_id) if result.run_id is not None else {}
    differences = diff_runs(expected, actual, limit=20)
    allocation_errors = check_allocations(actual, args.budget)
    final_ok = result.final is not None and result.final.returncode == 0
    bad_integrity = [c for c in result.integrity if c != "ok"]
    print("report and migration kills ...", file=sys.stderr)
    reports = report_kills(folder, db, args.report_kills, args.seed)
    migrations = migration_kills(folder, args.migration_kills, args.seed)
    identical = (
        final_ok
        and not differences
        and not allocation_errors
        and not bad_integrity
        and result.mid_run_kills >= args.kills
    )
    figures = {
        "problems": args.problems,
        "budget": args.budget,
        "nodes": sum(len(p["nodes"]) for p in expected.values()),
        "reference_seconds": round(ref_seconds, 1),
        "torture_seconds": round(result.seconds, 1),
        "kills": result.kills,
        "mid_run_kills": result.mid_run_kills,
        "resumes": result.kills + result.refused,
        "resumes_refused_on_live_lease": result.refused,
        "nodes_at_kills": result.nodes_at_kill,
        "integrity_failures": bad_integrity,
        "divergences": differences,
        "allocation_errors": allocation_errors[:10],
        "search_identical": identical,
        "report_kills": reports,
        "migration_kills": migrations,
        "database": str(db) if args.keep else None,
    }
    ok = identical and reports["equal"] and not migrations["problems"]
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"search torture: {result.kills} SIGKILLs ({result.mid_run_kills} mid-run), "
            f"{figures['resumes']} resumes ({result.refused} refused on a live lease), "
            f"{result.seconds:.1f} s (uninterrupted: {ref_seconds:.1f} s), "
            f"{figures['nodes']} nodes over {args.problems} problems at budget {args.budget}"
        )
        print(f"  integrity_check after every kill: {bad_integrity or 'ok'}")
        print(f"  final database vs uninterrupted: {'IDENTICAL' if identical else 'DIVERGED'}")
        for line in differences + allocation_errors[:10]:
            print(f"    {line}")
        print(
            f"report torture: {reports['kills']} SIGKILLs during a {reports['report_seconds']} s "
            f"report; integrity {set(reports['integrity'])}; final report and grade cache "
            f"{'equal' if reports['equal'] else 'DIFFERENT'}"
        )
        print(
            f"migration torture: {migrations['kills']} SIGKILLs while creating a database "
            f"({migrations['interrupted_opens']} before the open returned); states "
            f"{migrations['states']}; {'all reopened at head' if not migrations['problems'] else migrations['problems']}"  # noqa: E501
        )
        print(f"verdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
