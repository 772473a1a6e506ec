"""Bad input through the CLI, against a real SQLite file that already holds a finished run.

Every case must end the same way: exactly one line on stderr starting with `error:`, a non-zero
exit code, no traceback, and the database exactly as it was before (every row of every table,
read through a separate read-only stdlib connection; the raw bytes for files that are not
SQLite). Commands run in-process through Typer's CliRunner; the read-only database case runs
`rebase` as a child process, because as root the only way to make a 0444 file unwritable is to
start the process without CAP_DAC_OVERRIDE (see `_without_override`).
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rebase_cli.cli.app import app
from rebase_cli.sim.spawn import SpawnedSimulator, spawn
from tests.conftest import SHARED_DATA

SQLITE_MAGIC = b"SQLite format 3\x00"
SIM = ["--policy", "sim", "--reward", "sim"]


# ------------------------------------------------------------------------------ helpers


def data_dir() -> str:
    return os.environ.get("REBASE_DATA_DIR") or str(SHARED_DATA)


def snapshot(path: Path) -> str:
    """What a command could have changed: every table's schema and rows (SQLite), else the
    file's sha256. The read-only URI connection guarantees the check itself writes nothing."""
    data = path.read_bytes()
    if not data.startswith(SQLITE_MAGIC):
        return hashlib.sha256(data).hexdigest()
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return "\n".join(connection.iterdump())
    except sqlite3.DatabaseError:  # a damaged file with an SQLite header
        return hashlib.sha256(data).hexdigest()
    finally:
        connection.close()


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file so that the file alone is the whole database."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def invoke(db: Path, *args: str, env: dict[str, str] | None = None, unchanged: bool = True):
    """`rebase --db DB ARGS` in-process; unless told otherwise, fails the test when the command
    changed an existing database (checked here, not in a fixture's teardown, so the failure
    shows the command's own output)."""
    before = snapshot(db) if unchanged and db.exists() else None
    result = CliRunner().invoke(
        app, ["--db", str(db), *args], env={"REBASE_DATA_DIR": data_dir(), **(env or {})}
    )
    if before is not None:
        assert snapshot(db) == before, (
            f"the command changed the database; it said:\n{result.output}"
        )
    return result


def assert_one_line_error(
    code: int | None, stderr: str, stdout: str, *fragments: str, expected_code: int = 1
) -> str:
    """The contract of a user error; returns the line."""
    assert "Traceback" not in stderr + stdout, stderr + stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert code == expected_code, f"exit {code}: {line}"
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_cli_error(result, *fragments: str, expected_code: int = 1) -> str:
    # Anything but SystemExit means an exception escaped the error boundary.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return assert_one_line_error(
        result.exit_code, result.stderr, result.stdout, *fragments, expected_code=expected_code
    )


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def finished_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with run-1: a real (simulated) search of 2 GSM8K problems, finished."""
    path = tmp_path_factory.mktemp("base") / "base.db"
    args = ["search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2", *SIM]
    result = invoke(path, *args, unchanged=False)
    assert result.exit_code == 0, result.output
    checkpoint(path)
    return path


@pytest.fixture
def db(finished_db: Path, tmp_path: Path) -> Path:
    """A private copy of the finished database."""
    path = tmp_path / "rebase.db"
    shutil.copyfile(finished_db, path)
    return path


@pytest.fixture(scope="module")
def policy_only_server() -> Iterator[SpawnedSimulator]:
    """A simulator serving only the policy role: /v1/score answers 404."""
    with spawn(
        ["--role", "policy", "--port", "0", "--dataset", "gsm8k"],
        env={"REBASE_DATA_DIR": data_dir()},
    ) as server:
        yield server


def closed_port_url() -> str:
    """A local URL that refuses connections (the port was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ------------------------------------------------------------------------ unknown run ids


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["report", "run-999"], "no run 'run-999'"),
        (["runs", "show", "run-999"], "no run 'run-999'"),
        (["runs", "delete", "run-999", "--yes"], "no run 'run-999'"),
        (["tree", "run-999", "0"], "no run 'run-999'"),
        (["tree", "run-1", "99"], "no problem with dataset index 99"),
        (["export", "run-999", "--format", "jsonl"], "no run 'run-999'"),
        (["search", "--run", "run-999", *SIM], "no run 'run-999'"),
        (["search", "--run", "no-such-name", *SIM], "no run 'no-such-name'"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_unknown_run_or_problem(db: Path, args: list[str], fragment: str) -> None:
    line = assert_cli_error(invoke(db, *args), fragment)
    # The hint says where to look, as a command that works on this database.
    assert f"rebase --db {db} runs" in line or "0-based" in line


# -------------------------------------------------------------------------------- datasets


DATASETS = {
    "malformed-line": (
        b'{"question": "1+1?", "answer": "2"}\n{"question": "2+2?", "answer": \n',
        ["malformed-line.jsonl:2: not valid JSON", "one JSON object"],
    ),
    "not-an-object": (b'["1+1?", "2"]\n', ["not-an-object.jsonl:1: expected a JSON object"]),
    "wrong-fields": (
        b'{"q": "1+1?", "a": "2"}\n',
        ["wrong-fields.jsonl:1: no question field", "fields: a, q", "--question-field"],
    ),
    "no-answer": (b'{"question": "1+1?", "solution": "2"}\n', ["no answer field"]),
    "empty": (b"", ["empty.jsonl holds no problems"]),
    "blank-lines": (b"\n  \n\n", ["blank-lines.jsonl holds no problems"]),
}


@pytest.mark.parametrize("name", list(DATASETS))
def test_bad_dataset_file(db: Path, tmp_path: Path, name: str) -> None:
    content, fragments = DATASETS[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    result = invoke(db, "search", "--dataset", str(path), "--budget", "4", *SIM)
    assert_cli_error(result, *fragments)


def test_named_field_that_is_missing(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "fields.jsonl"
    path.write_text('{"question": "1+1?", "answer": "2"}\n')
    result = invoke(
        db, "search", "--dataset", str(path), "--budget", "4", "--question-field", "prompt", *SIM
    )
    assert_cli_error(result, "no field 'prompt'", "fields: answer, question")


def test_dataset_that_is_not_utf8(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"question": "café?", "answer": "2"}\n'.encode("latin-1"))
    result = invoke(db, "search", "--dataset", str(path), "--budget", "4", *SIM)
    assert_cli_error(result, "latin1.jsonl:1", "UTF-8")


@pytest.mark.parametrize("spec", ["no-such-file.jsonl", "a-folder"])
def test_dataset_that_is_neither_a_name_nor_a_file(db: Path, tmp_path: Path, spec: str) -> None:
    (tmp_path / "a-folder").mkdir()
    result = invoke(db, "search", "--dataset", str(tmp_path / spec), "--budget", "4", *SIM)
    assert_cli_error(result, "unknown dataset", "gsm8k, math500")


def test_known_dataset_with_a_wrong_checksum(db: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "data" / "gsm8k" / "test.jsonl"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"question": "1+1?", "answer": "#### 2"}\n')
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "4", *SIM,
        env={"REBASE_DATA_DIR": str(tmp_path / "data")},
    )  # fmt: skip
    assert_cli_error(result, "does not match the published checksum of gsm8k")


def test_bad_dataset_is_reported_before_any_server_is_contacted(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n")
    url = closed_port_url()
    result = invoke(
        db, "search", "--dataset", str(path), "--budget", "4", "--policy", url, "--reward", url,
        "--server-wait", "0",
    )  # fmt: skip
    assert_cli_error(result, "bad.jsonl:1: not valid JSON")


def test_field_names_fix_a_dataset_with_other_fields(finished_db: Path, tmp_path: Path) -> None:
    path = tmp_path / "renamed.jsonl"
    path.write_text('{"q": "What is 3 + 4?", "a": "7"}\n')
    result = invoke(
        tmp_path / "fresh.db", "search", "--dataset", str(path), "--budget", "2",
        "--question-field", "q", "--answer-field", "a", *SIM,
    )  # fmt: skip
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------- config and budgets


CONFIGS = {
    "typo.yaml": ("budjet: 16\n", ["unknown config key 'budjet'", "did you mean 'budget'?"]),
    "unknown.yaml": ("budget: 4\nfoo: 1\n", ["unknown config key 'foo'"]),
    "mistyped.yaml": ("budget: many\n", ["invalid budget='many'"]),
    "zero-width.yaml": ("width: 0\n", ["invalid budget=0"]),
    "temperature.yaml": ("budget: 4\nsoftmax_temperature: -1\n", ["balance_temperature=-1"]),
    "method.yaml": ("budget: 4\nmethod: mcts\n", ["invalid method='mcts'"]),
    "not-yaml.yaml": ("budget: [4\n", ["is not valid YAML", "fix the file"]),
    "list.yaml": ("- budget\n- 4\n", ["must be a mapping of config keys"]),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_bad_config_file(db: Path, tmp_path: Path, name: str) -> None:
    text, fragments = CONFIGS[name]
    path = tmp_path / name
    path.write_text(text)
    result = invoke(db, "search", "--dataset", "gsm8k", "--config", str(path), *SIM)
    assert_cli_error(result, *fragments)


def test_missing_config_file(db: Path, tmp_path: Path) -> None:
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--config", str(tmp_path / "nope.yaml"), *SIM
    )
    assert_cli_error(result, "nope.yaml does not exist")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--budget", "0"], "invalid budget=0"),
        (["--budget", "-3"], "invalid budget=-3"),
        ([], "`budget` is required"),
        (["--budget", "4", "--limit", "0"], "invalid limit=0"),
        (["--budget", "4", "--concurrency", "0"], "invalid concurrency=0"),
        (["--budget", "4", "--max-depth", "-1"], "invalid max_depth=-1"),
        (["--budget", "4", "--reward-protocol", "grpc"], "invalid reward_protocol='grpc'"),
        (["--budget", "4", "--template", "no-such-template"], "unknown template"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_search_values(db: Path, flags: list[str], fragment: str) -> None:
    assert_cli_error(invoke(db, "search", "--dataset", "gsm8k", *flags, *SIM), fragment)


def test_resume_and_run_together_is_a_usage_error(db: Path) -> None:
    result = invoke(db, "search", "--budget", "4", "--resume", "--run", "run-1", *SIM)
    assert_cli_error(result, "--resume and --run cannot be combined", expected_code=2)


def test_resume_with_a_different_config_lists_the_keys(db: Path) -> None:
    result = invoke(db, "search", "--run", "run-1", "--budget", "8", "--temperature", "0.5", *SIM)
    assert_cli_error(result, "run-1 was made with another config", "budget: 4 → 8")


def test_non_numeric_budget_is_a_usage_error_without_traceback(db: Path) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--budget", "abc", *SIM)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output and "--budget" in result.stderr


def test_non_numeric_budget_is_one_line(db: Path) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--budget", "abc", *SIM)
    assert_cli_error(result, "--budget", expected_code=2)


# ------------------------------------------------------------------------ property test

# The documented ranges of each flag (the contract in `rebase search --help` and DESIGN §4),
# written out independently of SearchConfig's validators.
RANGES: dict[str, tuple[float, float, bool]] = {  # flag: (low, high, low is exclusive)
    "--budget": (1, 65536, False),
    "--balance-temperature": (0, 1e6, True),
    "--temperature": (0, 10, False),
    "--top-p": (0, 1, True),
    "--max-depth": (1, 10_000, False),
    "--concurrency": (1, 100_000, False),
    "--seed": (0, 2**31 - 1, False),
}
INT_FLAGS = {"--budget", "--max-depth", "--concurrency", "--seed"}


def _in_range(flag: str, value: float) -> bool:
    low, high, exclusive = RANGES[flag]
    if math.isnan(value):
        return False
    return (low < value if exclusive else low <= value) and value <= high


def _value(flag: str) -> st.SearchStrategy:
    low, high, _ = RANGES[flag]
    if flag in INT_FLAGS:
        return st.one_of(st.integers(int(low), int(high)), st.integers(-(10**12), 10**12))
    return st.one_of(st.floats(low, high), st.floats(allow_nan=True, allow_infinity=True))


@settings(
    max_examples=60,
    deadline=None,
    # The same database across examples is the point: no example may change it.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    values=st.fixed_dictionaries({}, optional={flag: _value(flag) for flag in RANGES}),
    method=st.sampled_from(["rebase", "sample", "beam", "mcts", "Rebase", ""]),
)
def test_search_accepts_exactly_the_documented_ranges(db: Path, values: dict, method: str) -> None:
    """Any flag values: out of range gives a one-line config error naming a bad flag; in range
    gets as far as contacting the policy server (which refuses connections here)."""
    values.setdefault("--budget", 4)
    url = closed_port_url()
    args = ["search", "--dataset", "gsm8k", "--method", method, "--policy", url, "--reward", url,
            "--server-wait", "0"]  # fmt: skip
    for flag, value in values.items():
        args += [flag, repr(value) if isinstance(value, float) else str(value)]
    line = assert_cli_error(invoke(db, *args))
    bad = [flag for flag, value in values.items() if not _in_range(flag, value)]
    if method not in {"rebase", "sample", "beam"}:
        bad.append("--method")
    if bad:
        named = [flag for flag in bad if f"invalid {flag[2:].replace('-', '_')}=" in line]
        assert named, f"{line!r} names none of {bad}"
    else:
        assert "unreachable" in line and url in line, line


# ----------------------------------------------------------------- wrong server protocol


def test_unreachable_reward_server(db: Path, policy_only_server: SpawnedSimulator) -> None:
    url = closed_port_url()
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2",
        "--policy", policy_only_server.url, "--reward", url, "--server-wait", "0",
    )  # fmt: skip
    assert_cli_error(result, f"reward server {url} unreachable", f"rebase --db {db} serve")


def test_reward_url_of_a_server_that_does_not_score(
    db: Path, policy_only_server: SpawnedSimulator
) -> None:
    url = policy_only_server.url
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "4", "--limit", "2",
        "--policy", url, "--reward", url,
    )  # fmt: skip
    assert_cli_error(result, "does not serve /v1/score", "--reward-protocol")


# ---------------------------------------------------------------- files that are not ours


NOT_SQLITE = {
    "text": b"hello, this is not a database\n",
    "random": bytes(range(256)) * 16,
    "truncated": SQLITE_MAGIC + b"\x10\x00garbage",
}
COMMANDS = [
    ["runs"],
    ["runs", "show", "run-1"],
    ["report", "run-1"],
    ["search", "--dataset", "gsm8k", "--budget", "4", "--limit", "1", *SIM],
]


@pytest.mark.parametrize("kind", list(NOT_SQLITE))
@pytest.mark.parametrize("args", COMMANDS, ids=lambda v: v[0] if v[0] != "runs" else " ".join(v))
def test_file_that_is_not_sqlite(tmp_path: Path, kind: str, args: list[str]) -> None:
    path = tmp_path / "other.db"
    path.write_bytes(NOT_SQLITE[kind])
    assert_cli_error(invoke(path, *args), "other.db is not a rebase database", "--db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]  # no -wal / -shm left


def test_sqlite_file_of_another_application(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    connection.execute("INSERT INTO users VALUES (1, 'ada')")
    connection.commit()
    connection.close()
    # invoke() fails the test when rebase's tables were added to the other application's file.
    assert_cli_error(invoke(path, "runs"), "app.sqlite")


def test_database_newer_than_the_code(db: Path) -> None:
    connection = sqlite3.connect(db)
    connection.execute("UPDATE alembic_version SET version_num = 'ffff9999'")
    connection.commit()
    connection.close()
    assert_cli_error(invoke(db, "runs"), "schema revision ffff9999", "upgrade rebase-cli")


# ------------------------------------------------------------------- read-only database


def _without_override(tmp_path: Path) -> list[str]:
    """A command prefix under which a 0444 file cannot be written. For a normal user that is
    no prefix at all; root bypasses file modes through CAP_DAC_OVERRIDE, so root's children are
    started by `setpriv` with that capability (and DAC_READ_SEARCH) dropped from their bounding
    set. Skips the test only when neither works on this machine."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without `setpriv`: cannot make a file read-only to rebase")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0o444)
    written = subprocess.run(
        [*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'a')"], stderr=subprocess.DEVNULL
    )
    probe.unlink()
    if written.returncode == 0:
        pytest.skip("root keeps write access to 0444 files even under setpriv here")
    return prefix


@pytest.fixture
def read_only(finished_db: Path, tmp_path: Path) -> tuple[Path, list[str]]:
    """A 0444 copy of the finished database (in a writable folder, as after `chmod a-w`) and
    the prefix that makes it unwritable for a `rebase` child."""
    prefix = _without_override(tmp_path)
    path = tmp_path / "ro.db"
    shutil.copyfile(finished_db, path)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return path, prefix


def run_child(prefix: list[str], db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`rebase --db DB ARGS` as a child under `prefix`; the file's bytes and rows must not
    change."""
    env = {k: v for k, v in os.environ.items() if k != "REBASE_DB"}
    env.update(REBASE_DATA_DIR=data_dir(), COLUMNS="200", NO_COLOR="1", TERM="dumb")
    before_bytes, before_rows = db.read_bytes(), snapshot(db)
    child = subprocess.run(
        [*prefix, sys.executable, "-m", "rebase_cli", "--db", str(db), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert db.read_bytes() == before_bytes and snapshot(db) == before_rows, child.stderr
    return child


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--dataset", "gsm8k", "--budget", "4", "--limit", "1", *SIM],
        # run-1 is done: only a larger --limit gives a resume something to write.
        ["search", "--run", "run-1", "--limit", "3", *SIM],
        ["runs", "delete", "run-1", "--yes"],
    ],
    ids=["new run", "resume", "delete"],
)
def test_read_only_database_refuses_writes(read_only, args: list[str]) -> None:
    path, prefix = read_only
    child = run_child(prefix, path, *args)
    assert_one_line_error(
        child.returncode, child.stderr, child.stdout, "ro.db is read-only", "writable"
    )


def test_read_only_database_can_still_be_listed(read_only) -> None:
    path, prefix = read_only
    child = run_child(prefix, path, "runs", "--json")
    assert child.returncode == 0, child.stderr
    assert '"run": "run-1"' in child.stdout


def test_read_only_database_report(read_only) -> None:
    path, prefix = read_only
    child = run_child(prefix, path, "report", "run-1")
    assert "Traceback" not in child.stderr
    if child.returncode != 0:  # a report without caching grades would be better still
        assert_one_line_error(child.returncode, child.stderr, child.stdout, "read-only")
