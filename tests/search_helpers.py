"""Shared machinery for the end-to-end reliability tests (and `benchmarks/torture.py`).

Everything here is real: the simulator runs as a child process on a TCP port, `rebase` runs as a
child process (`python -m rebase_cli`) against a real SQLite file, and runs are compared by
reading that file with the stdlib `sqlite3` module, independently of the code under test.

A tree is compared by what identifies a node regardless of insertion order or row ids:
(depth, ordinal) and its parent's (depth, ordinal). Row ids, timestamps, elapsed seconds and
retry counts legitimately differ between an uninterrupted run and a killed-and-resumed one;
everything else (texts, scores, token counts, answers, allocations, statuses) must not.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rebase_cli.sim.spawn import SpawnedSimulator, spawn

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REBASE = [sys.executable, "-m", "rebase_cli"]
# Exit codes of a child killed by a signal, as subprocess reports them.
KILLED = -signal.SIGKILL


# ------------------------------------------------------------------------------ simulator


def start_simulator(*extra: str, port: int = 0, seed: int = 0) -> SpawnedSimulator:
    """A simulator child (policy and reward on one port) serving GSM8K; `extra` adds flags
    such as `--base-ms 20` or `--fault-500 0.05`."""
    return spawn(
        ["--role", "both", "--port", str(port), "--dataset", "gsm8k", "--seed", str(seed), *extra],
        env=_data_env(),
    )


def port_of(sim: SpawnedSimulator) -> int:
    return int(sim.url.rsplit(":", 1)[1])


def _data_env() -> dict[str, str]:
    return {"REBASE_DATA_DIR": os.environ.get("REBASE_DATA_DIR") or str(SHARED_DATA)}


# ------------------------------------------------------------------------------ the CLI


# A SIGKILLed process leaves its lease behind; with the default 30 s every resume right after a
# kill would be refused. One second has expired before the next child has even imported rebase
# (the lease tests set their own).
TEST_LEASE_TTL = "1"


def cli_env(db: Path, **extra: str) -> dict[str, str]:
    """The environment of a `rebase` child: its database, the shared data, a user cache next to
    the database, a short lease, unbuffered output (so a test can wait for a line while the
    child runs) and a wide, colourless console (so one-line messages stay on one line)."""
    env = {k: v for k, v in os.environ.items() if k != "REBASE_DB"}
    env.update(_data_env())
    env.setdefault("REBASE_CACHE_DIR", str(Path(db).parent / "cache"))
    env.update(
        REBASE_DB=str(db),
        REBASE_LEASE_TTL=TEST_LEASE_TTL,
        PYTHONUNBUFFERED="1",
        COLUMNS="240",
        NO_COLOR="1",
        TERM="dumb",
    )
    env.update(extra)
    return env


def rebase(
    db: Path, *args: str, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `rebase ARGS` to completion and capture its output."""
    return subprocess.run(
        [*REBASE, *args],
        env={**cli_env(db), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def search_args(
    sim_url: str,
    *,
    budget: int = 8,
    limit: int = 12,
    seed: int = 7,
    concurrency: int = 4,
    extra: Sequence[str] = (),
) -> list[str]:
    """`search` with the flags every test passes (the simulator on both endpoints)."""
    return [
        "search",
        "--dataset",
        "gsm8k",
        "--budget",
        str(budget),
        "--limit",
        str(limit),
        "--seed",
        str(seed),
        "--concurrency",
        str(concurrency),
        "--policy",
        sim_url,
        "--reward",
        sim_url,
        *extra,
    ]


@dataclass
class CliProcess:
    """A `rebase` child running in the background; its stdout and stderr go to files so that a
    test can wait for a line, kill it at any moment, and still read everything it said."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def wait_for(self, text: str, timeout: float = 60) -> bool:
        """Wait until `text` appears in stdout or stderr; False if the child exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stdout or text in self.stderr:
                return True
            if self.process.poll() is not None:
                return text in self.stdout or text in self.stderr
            time.sleep(0.02)
        raise TimeoutError(f"no {text!r} within {timeout}s\n{self.output()}")

    def wait(self, timeout: float = 180) -> int:
        return self.process.wait(timeout)

    def kill(self) -> int:
        """SIGKILL (no cleanup of any kind runs in the child) and reap it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(30)

    def interrupt(self) -> None:
        """SIGINT, what Ctrl-C sends."""
        self.process.send_signal(signal.SIGINT)


def start_rebase(db: Path, *args: str, logs: Path, env: dict[str, str] | None = None) -> CliProcess:
    """Start `rebase ARGS` in the background, logging to fresh files under `logs`. The child
    leads a new process group, so that anything it starts can be found (`live_group`)."""
    logs.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    out, err = logs / f"{stamp}.out", logs / f"{stamp}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*REBASE, *args],
            env={**cli_env(db), **(env or {})},
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return CliProcess(process, out, err)


def live_group(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes of process group `pgid`."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is parenthesised and may hold spaces: split after its last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


# ----------------------------------------------------------------------------- SQLite


def connect(db: Path) -> sqlite3.Connection:
    """A plain stdlib connection (never the code under test) with a generous busy timeout."""
    connection = sqlite3.connect(db, timeout=30)
    connection.execute("PRAGMA busy_timeout = 30000")
    return connection


def integrity(db: Path) -> str:
    """`PRAGMA integrity_check` and `foreign_key_check` together: "ok" or what is wrong."""
    with connect(db) as connection:
        rows = [r[0] for r in connection.execute("PRAGMA integrity_check").fetchall()]
        bad_keys = connection.execute("PRAGMA foreign_key_check").fetchall()
    connection.close()
    problems = [r for r in rows if r != "ok"] + [f"foreign key: {r}" for r in bad_keys]
    return "ok" if not problems else "; ".join(map(str, problems[:5]))


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    connection = connect(db)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def run_ids(db: Path) -> list[int]:
    return [r[0] for r in query(db, "SELECT id FROM run ORDER BY id")]


def run_status(db: Path, run_id: int) -> str:
    return query(db, "SELECT status FROM run WHERE id = ?", (run_id,))[0][0]


def node_count(db: Path, run_id: int | None = None) -> int:
    """Nodes of one run (or of all runs); 0 while the database has no node table yet."""
    try:
        if run_id is None:
            return query(db, "SELECT count(*) FROM node")[0][0]
        return query(
            db,
            "SELECT count(*) FROM node JOIN problem ON node.problem_id = problem.id "
            "WHERE problem.run_id = ?",
            (run_id,),
        )[0][0]
    except sqlite3.OperationalError:
        return 0


_NODE_FIELDS = (
    "text",
    "score",
    "path_tokens",
    "prompt_tokens",
    "completion_tokens",
    "finish_reason",
    "terminal",
    "terminal_reason",
    "answer",
    "seed",
)
_PROBLEM_FIELDS = (
    "status",
    "error",
    "depth_completed",
    "policy_prompt_tokens",
    "policy_completion_tokens",
    "reward_tokens",
    "policy_requests",
    "reward_requests",
)


def dump_run(db: Path, run_id: int, indexes: Sequence[int] | None = None) -> dict[int, dict]:
    """A run's problems keyed by dataset index, each with its row fields, its nodes keyed by
    (depth, ordinal) and its allocations keyed by (depth, ordinal of the allocated node).

    Retries and elapsed seconds are left out: they describe the session, not the search."""
    connection = connect(db)
    connection.row_factory = sqlite3.Row
    try:
        problems = {
            row["dataset_index"]: {
                "row": {k: row[k] for k in _PROBLEM_FIELDS},
                "nodes": {},
                "allocations": {},
                "id": row["id"],
            }
            for row in connection.execute("SELECT * FROM problem WHERE run_id = ?", (run_id,))
            if indexes is None or row["dataset_index"] in indexes
        }
        by_id = {p["id"]: p for p in problems.values()}
        node_sql = (
            "SELECT n.*, p.depth AS parent_depth, p.ordinal AS parent_ordinal "
            "FROM node n LEFT JOIN node p ON n.parent_id = p.id "
            "JOIN problem pr ON n.problem_id = pr.id WHERE pr.run_id = ?"
        )
        for row in connection.execute(node_sql, (run_id,)):
            owner = by_id.get(row["problem_id"])
            if owner is None:
                continue
            key = (row["depth"], row["ordinal"])
            assert key not in owner["nodes"], f"duplicate node {key}"
            parent = (
                None
                if row["parent_depth"] is None
                else (
                    row["parent_depth"],
                    row["parent_ordinal"],
                )
            )
            owner["nodes"][key] = {"parent": parent, **{k: row[k] for k in _NODE_FIELDS}}
        alloc_sql = (
            "SELECT a.problem_id, a.depth, n.depth AS node_depth, n.ordinal, a.weight, "
            "a.children FROM allocation a JOIN node n ON a.node_id = n.id "
            "JOIN problem pr ON a.problem_id = pr.id WHERE pr.run_id = ?"
        )
        for row in connection.execute(alloc_sql, (run_id,)):
            owner = by_id.get(row["problem_id"])
            if owner is None:
                continue
            assert row["node_depth"] == row["depth"], "allocation names a node of another depth"
            key = (row["depth"], row["ordinal"])
            assert key not in owner["allocations"], f"duplicate allocation {key}"
            owner["allocations"][key] = (row["weight"], row["children"])
    finally:
        connection.close()
    for problem in problems.values():
        del problem["id"]
    return problems


def diff_runs(expected: dict[int, dict], actual: dict[int, dict], limit: int = 8) -> list[str]:
    """Human-readable differences between two dumps (empty when they are equal)."""
    out: list[str] = []
    if set(expected) != set(actual):
        out.append(f"problems differ: {sorted(set(expected) ^ set(actual))}")
    for index in sorted(set(expected) & set(actual)):
        a, b = expected[index], actual[index]
        if a["row"] != b["row"]:
            out.append(f"problem {index}: row {a['row']} != {b['row']}")
        for part in ("nodes", "allocations"):
            missing = sorted(set(a[part]) - set(b[part]))
            extra = sorted(set(b[part]) - set(a[part]))
            if missing:
                out.append(f"problem {index}: {part} lost {missing[:5]}")
            if extra:
                out.append(f"problem {index}: {part} extra {extra[:5]}")
            for key in sorted(set(a[part]) & set(b[part])):
                if a[part][key] != b[part][key]:
                    out.append(f"problem {index} {part} {key}: {a[part][key]} != {b[part][key]}")
        if len(out) >= limit:
            break
    return out[:limit]


def check_allocations(dump: dict[int, dict], budget: int, max_tokens: int = 1024) -> list[str]:
    """REBASE invariants of every level of every problem in `dump`: the allocation at depth d
    is over open nodes of depth d only and sums to the remaining width (the budget minus the
    nodes of depths <= d that finished: terminal, or at the path token limit), each allocated
    node has exactly the children it was given, no level has children without an allocation,
    and a problem never has more finished answers than its budget."""
    errors: list[str] = []
    for index, problem in dump.items():
        nodes, allocations = problem["nodes"], problem["allocations"]
        depths = sorted({d for d, _ in nodes})
        finished = 0
        for depth in depths:
            level = {o: n for (d, o), n in nodes.items() if d == depth}
            given = {o: c for (d, o), (_, c) in allocations.items() if d == depth}
            children: dict[int, int] = {}
            for (d, _), node in nodes.items():
                if d == depth + 1:
                    children[node["parent"][1]] = children.get(node["parent"][1], 0) + 1
            finished += sum(
                1 for n in level.values() if n["terminal"] or n["path_tokens"] >= max_tokens
            )
            if given:
                width = budget - finished
                if sum(given.values()) != width:
                    errors.append(
                        f"problem {index} depth {depth}: allocations sum to "
                        f"{sum(given.values())}, remaining width is {width}"
                    )
                open_ordinals = {
                    o
                    for o, n in level.items()
                    if not n["terminal"] and n["path_tokens"] < max_tokens
                }
                if not set(given) <= open_ordinals:
                    errors.append(f"problem {index} depth {depth}: allocation to a closed node")
                if any(c < 0 for c in given.values()):
                    errors.append(f"problem {index} depth {depth}: negative allocation")
                for ordinal, count in given.items():
                    if children.get(ordinal, 0) != count:
                        errors.append(
                            f"problem {index} depth {depth}: node {ordinal} was given {count} "
                            f"children and has {children.get(ordinal, 0)}"
                        )
            elif children:
                errors.append(f"problem {index} depth {depth}: children without an allocation")
        answers = sum(1 for n in nodes.values() if n["answer"] is not None)
        if answers > budget:
            errors.append(f"problem {index}: {answers} finished answers > budget {budget}")
    return errors


# ------------------------------------------------------------------------ waiting, copying


def wait_until(predicate: Callable[[], bool], timeout: float = 120, every: float = 0.02) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(every)


def copy_db(source: Path, target: Path) -> Path:
    """A consistent copy of a database (SQLite's backup API, WAL content included)."""
    src, dst = connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def committed_prefix_errors(partial: dict[int, dict], full: dict[int, dict]) -> list[str]:
    """How a run stopped midway differs from being a prefix of the uninterrupted run: every
    committed node and allocation must equal the full run's, and every committed depth must
    be complete (one transaction per level: never half a level)."""
    errors: list[str] = []
    for index, problem in partial.items():
        reference = full[index]
        for part in ("nodes", "allocations"):
            for key, value in problem[part].items():
                if reference[part].get(key) != value:
                    errors.append(f"problem {index} {part} {key}: {value} not in the full run")
        for depth in {d for d, _ in problem["nodes"]}:
            have = {k for k in problem["nodes"] if k[0] == depth}
            want = {k for k in reference["nodes"] if k[0] == depth}
            if have != want:
                errors.append(f"problem {index} depth {depth}: {len(have)}/{len(want)} nodes")
    return errors


# ---------------------------------------------------------------------------- references

_REFERENCES: dict[tuple, tuple[Path, dict[int, dict]]] = {}


def reference_run(root: Path, *, budget: int, limit: int, seed: int = 7) -> dict[int, dict]:
    return _reference(root, budget, limit, seed)[1]


def reference_db(root: Path, *, budget: int, limit: int, seed: int = 7) -> Path:
    """The database of `reference_run` (copy it before changing anything in it)."""
    return _reference(root, budget, limit, seed)[0]


def _reference(root: Path, budget: int, limit: int, seed: int) -> tuple[Path, dict[int, dict]]:
    """The dump of an uninterrupted run against a fault-free simulator, computed once per
    process for each (budget, limit, seed) under `root`. A problem's tree depends only on the
    seed, its index and the semantic config, so a reference with a larger limit also serves a
    run with a smaller one (restrict it with `subset`)."""
    key = (budget, limit, seed)
    if key not in _REFERENCES:
        folder = root / f"reference-b{budget}-l{limit}-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        db = folder / "rebase.db"
        with start_simulator() as sim:
            args = search_args(sim.url, budget=budget, limit=limit, seed=seed, concurrency=32)
            done = rebase(db, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        _REFERENCES[key] = (db, dump_run(db, run_ids(db)[-1]))
    return _REFERENCES[key]


def subset(dump: dict[int, dict], indexes: Sequence[int]) -> dict[int, dict]:
    return {i: dump[i] for i in indexes}


# ------------------------------------------------------------------------ kill and resume


@dataclass
class TortureResult:
    """What a kill-and-resume loop did. A kill is *mid-run* when the run was not finished
    after it (it cut a search short); `integrity` has one entry per child stopped."""

    run_id: int | None = None
    kills: int = 0
    mid_run_kills: int = 0
    refused: int = 0
    kill_delays: list[float] = field(default_factory=list)
    nodes_at_kill: list[int] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    final: subprocess.CompletedProcess[str] | None = None
    seconds: float = 0.0


def kill_and_resume(
    db: Path,
    first_args: Sequence[str],
    resume_args: Callable[[int], Sequence[str]],
    *,
    kills: int,
    rng: random.Random,
    delay: tuple[float, float],
    logs: Path,
    env: dict[str, str] | None = None,
    on_kill: Callable[[TortureResult], None] | None = None,
) -> TortureResult:
    """Start `rebase FIRST_ARGS`; then until `kills` mid-run kills happened (or the run is
    done): wait until the child announced its run, sleep a seeded random delay, SIGKILL it,
    check `PRAGMA integrity_check`, and start `rebase RESUME_ARGS(run_id)`. The last child runs
    to the end and is returned as `final`.

    A resume that finds the dead child's lease not yet expired is refused (exit 1); it is
    counted in `refused` and simply started again. `on_kill` sees the result after each kill
    (for progress lines)."""
    result = TortureResult()
    started = time.monotonic()
    args: Sequence[str] = first_args
    while result.mid_run_kills < kills:
        child = start_rebase(db, *args, logs=logs, env=env)
        child.wait_for("run-", timeout=180)
        pause = rng.uniform(*delay)
        if child.process.poll() is None:
            time.sleep(pause)
        code = child.kill()
        if code == 1 and "is being searched by another process" in child.stderr:
            result.refused += 1
            time.sleep(0.2)
            continue
        if code not in (KILLED, 0):
            raise RuntimeError(f"rebase {' '.join(args)} failed ({code})\n{child.output()}")
        if code == KILLED:
            result.kills += 1
            result.kill_delays.append(pause)
        result.integrity.append(integrity(db))
        if result.run_id is None:
            ids = run_ids(db)
            if not ids:
                continue  # killed before the run existed: start afresh
            result.run_id = ids[-1]
            args = resume_args(result.run_id)
        result.nodes_at_kill.append(node_count(db, result.run_id))
        if run_status(db, result.run_id) == "done":
            break
        result.mid_run_kills += 1
        if on_kill is not None:
            on_kill(result)
    result.final = rebase(db, *args, env=env)
    result.seconds = time.monotonic() - started
    return result
