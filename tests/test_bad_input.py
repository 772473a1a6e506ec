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
import json
import math
import os
import re
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
    """A read-only database is reported on; its new verdicts are not cached (run_child checks
    that the file is unchanged), and the report says so."""
    path, prefix = read_only
    child = run_child(prefix, path, "report", "run-1", "--format", "json")
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report["runs"][0]["grading"]["stored"] is False
    assert report["runs"][0]["grading"]["graded"] > 0


# ------------------------------------------------ input that used to give a wrong result

DATASETS_SILENTLY_WRONG = {
    # str(None) was stored as the answer "None": every path graded wrong.
    "null-answer": (b'{"question": "1+1?", "answer": null}\n', ["field 'answer' is null"]),
    "empty-question": (b'{"question": "  ", "answer": "2"}\n', ["field 'question' is empty"]),
    "list-answer": (b'{"question": "1+1?", "answer": [2]}\n', ["field 'answer' is [2]"]),
    "bool-answer": (b'{"question": "1+1?", "answer": true}\n', ["field 'answer' is true"]),
}


@pytest.mark.parametrize("name", list(DATASETS_SILENTLY_WRONG))
def test_dataset_value_that_would_be_graded_wrongly(db: Path, tmp_path: Path, name: str) -> None:
    content, fragments = DATASETS_SILENTLY_WRONG[name]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(content)
    result = invoke(db, "search", "--dataset", str(path), "--budget", "4", *SIM)
    assert_cli_error(result, f"{name}.jsonl:1", *fragments)


@pytest.mark.parametrize("flag", ["--question-field", "--answer-field"])
def test_empty_field_name(db: Path, flag: str) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--budget", "4", flag, "", *SIM)
    assert_cli_error(result, f"{flag} is empty")


def _template(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(
        'name: mine\nprompt: "Q: {question}\\nA:"\nstep_delimiter: "\\n\\n"\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        # A string was split into characters: every one a stop string, 0 answers.
        ('extra_stop: "</s>"\n', ["`extra_stop` must be a list", 'extra_stop: ["</s>"]']),
        # Failed late, at the server, with "check the model name".
        ('prm:\n  good_token_id: "six-four-eight"\n', ["`good_token_id` must be a whole number"]),
        ("prm:\n  bad_token_id: true\n", ["`bad_token_id` must be a whole number"]),
        ("last_number_fallback: 3\n", ["`last_number_fallback` must be true or false"]),
    ],
    ids=["extra_stop string", "token id text", "token id bool", "flag number"],
)
def test_template_value_of_the_wrong_type(
    db: Path, tmp_path: Path, extra: str, fragments: list[str]
) -> None:
    template = _template(tmp_path, extra)
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "4", "--template", str(template), *SIM
    )
    assert_cli_error(result, "template.yaml", *fragments)


def test_max_tokens_below_max_step_tokens(db: Path) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--budget", "4", "--max-tokens", "8", *SIM)
    assert_cli_error(result, "max_tokens=8 is below max_step_tokens=256", "--max-tokens")


CONFIGS_SILENTLY_WRONG = {
    "bool-budget.yaml": ("budget: true\n", ["invalid budget=True", "a number"]),
    "bool-temperature.yaml": ("budget: 4\ntemperature: false\n", ["invalid temperature=False"]),
    "alias-conflict.yaml": ("budget: 4\nwidth: 8\n", ["'budget' and 'width' both set budget"]),
    "two-aliases.yaml": ("width: 4\nnum_samples: 8\n", ["'width' and 'num_samples' both set"]),
    "duplicate.yaml": ("budget: 4\nbudget: 8\n", ["key 'budget' is given twice"]),
}


@pytest.mark.parametrize("name", list(CONFIGS_SILENTLY_WRONG))
def test_config_that_would_be_read_wrongly(db: Path, tmp_path: Path, name: str) -> None:
    text, fragments = CONFIGS_SILENTLY_WRONG[name]
    path = tmp_path / name
    path.write_text(text)
    result = invoke(db, "search", "--dataset", "gsm8k", "--config", str(path), *SIM)
    assert_cli_error(result, *fragments)


@pytest.mark.parametrize("name", ["run-1", "7", "latest", "", "  "])
def test_run_name_that_could_never_be_reached_by_name(db: Path, name: str) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--budget", "4", "--name", name, *SIM)
    assert_cli_error(result, "--name")


# ----------------------------------------------------------- input that crashed or misled


@pytest.fixture
def not_http_port() -> Iterator[str]:
    """A local port that answers every connection with an SSH banner."""
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    server.close()


def test_policy_port_that_speaks_another_protocol(db: Path, not_http_port: str) -> None:
    result = invoke(
        db, "search", "--dataset", "gsm8k", "--budget", "4", "--policy", not_http_port,
        "--reward", "sim", "--server-wait", "0",
    )  # fmt: skip
    assert_cli_error(result, f"policy server {not_http_port} does not speak HTTP", "port")


def test_export_to_a_full_device(db: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    # Grading verdicts are cached as the export streams (a cache, not the run's data).
    result = invoke(db, "export", "run-1", "--format", "jsonl", "-o", "/dev/full", unchanged=False)
    assert_cli_error(result, "cannot write /dev/full", "No space left", expected_code=2)


def test_report_into_a_missing_folder_writes_nothing_first(db: Path, tmp_path: Path) -> None:
    # invoke() checks the database is unchanged: no grade was cached for a report that could
    # not be written.
    target = tmp_path / "missing" / "report.md"
    result = invoke(db, "report", "run-1", "-o", str(target))
    assert_cli_error(result, "folder", "does not exist", expected_code=2)


def test_config_that_is_a_folder(db: Path, tmp_path: Path) -> None:
    result = invoke(db, "search", "--dataset", "gsm8k", "--config", str(tmp_path), *SIM)
    assert_cli_error(result, "is a folder, not a file")


def test_dataset_with_a_line_too_long(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as handle:  # 17 MiB on one line, then nothing
        handle.write(b'{"question": "' + b"x" * (17 * 2**20) + b'", "answer": "1"}\n')
    result = invoke(db, "search", "--dataset", str(path), "--budget", "4", *SIM)
    assert_cli_error(result, "huge.jsonl:1: line longer than 16 MiB")


@pytest.mark.parametrize(
    "args", [["runs"], ["search", "--dataset", "gsm8k", "--budget", "2", *SIM]]
)
def test_database_that_is_a_device(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["--db", "/dev/null", *args])
    assert_cli_error(result, "/dev/null is not a regular file")


def test_empty_database_file_is_not_written_by_a_command_that_reads(tmp_path: Path) -> None:
    path = tmp_path / "zero.db"
    path.touch()
    for args in (["runs"], ["runs", "show", "run-1"], ["report", "run-1"], ["tree", "run-1", "0"]):
        assert_cli_error(invoke(path, *args), "zero.db is an empty file")
        assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zero.db"]


def test_disk_full_during_a_write_says_free_space_then_resume(db: Path) -> None:
    """SQLite's own "database or disk is full" (max_page_count reached on this connection)."""
    from sqlalchemy import text

    from rebase_cli.errors import StoreError
    from rebase_cli.store.database import Database

    database = Database.open(db)
    try:
        with pytest.raises(StoreError) as full, database.write() as session:
            pages = session.execute(text("PRAGMA page_count")).scalar_one()
            session.execute(text(f"PRAGMA max_page_count = {pages}"))
            session.execute(text("CREATE TABLE filler (x BLOB)"))
            session.execute(text("INSERT INTO filler VALUES (zeroblob(1000000))"))
        assert "the disk is full" in full.value.message
        assert "free space" in (full.value.hint or "") and "resume" in (full.value.hint or "")
    finally:
        database.close()


# ----------------------------------------------------------- input that is fine after all


def test_gzip_dataset_and_byte_order_mark_are_read(tmp_path: Path) -> None:
    import gzip

    lines = '{"question": "What is 3 + 4?", "answer": "7"}\n{"question": "2+2?", "answer": 4}\n'
    plain = tmp_path / "bom.jsonl"
    plain.write_bytes(b"\xef\xbb\xbf" + lines.encode())
    packed = tmp_path / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(lines.encode()))
    for path in (plain, packed):
        result = invoke(
            tmp_path / f"{path.stem}.db", "search", "--dataset", str(path), "--budget", "2", *SIM
        )
        assert result.exit_code == 0, result.output
        assert "2/2 problems done" in result.stdout


def test_damaged_gzip_dataset(db: Path, tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"question": "1+1?", "answer": "2"}\n' * 50)[:40])
    result = invoke(db, "search", "--dataset", str(path), "--budget", "4", *SIM)
    assert_cli_error(result, "cut.jsonl.gz is a damaged gzip file")


def test_config_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbfbudget: 2\nlimit: 1\n")
    result = invoke(tmp_path / "x.db", "search", "--dataset", "gsm8k", "--config", str(path), *SIM)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------ CLI conventions


def test_global_db_option_after_the_subcommand(db: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["runs", "--json", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert '"run": "run-1"' in result.stdout
    result = CliRunner().invoke(app, ["runs", "show", "run-1", f"--db={db}"])
    assert result.exit_code == 0, result.output
    assert not (Path.cwd() / "rebase.db").exists() or "run-1" in result.stdout
    clash = CliRunner().invoke(app, ["--db", str(db), "runs", "--db", str(tmp_path / "b.db")])
    assert_cli_error(clash, "--db given twice", expected_code=2)


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


HELP_COMMANDS = [
    [], ["search"], ["runs"], ["runs", "show"], ["runs", "delete"], ["db"], ["db", "status"],
    ["db", "backup"], ["datasets"], ["serve"], ["serve", "policy"], ["serve", "logs"],
    ["serve", "stop"], ["models"], ["grade"], ["report"], ["tree"], ["export"],
]  # fmt: skip


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "rebase")
def test_help_has_no_python_types(command: list[str]) -> None:
    text = _help(*command)
    for python_type in ("<bool>", "<int>", "<str>", "<float>", "<path>", "list[", " range>"):
        assert python_type not in text, f"{python_type!r} in `rebase {' '.join(command)} --help`"


def test_search_help_shows_defaults_and_panels() -> None:
    text = _help("search")
    for panel in ("What to search", "Search parameters", "Endpoints", "Run and output"):
        assert panel in text
    for default in ("[default: 256]", "[default: 0.2]", "[default: 25]", "[default: rebase]"):
        assert default in text, default
    assert "[default: auto: 4 x the policy server's capacity / budget, at least 32]" in " ".join(
        text.replace("│", " ").split()
    )
    assert "[required unless --run]" in text


def test_each_short_flag_has_one_meaning() -> None:
    meanings: dict[str, set[str]] = {}
    for command in HELP_COMMANDS:
        for line in _help(*command).splitlines():
            words = line.strip("│ ").split()
            short = words[1] if len(words) >= 2 and words[0].startswith("--") else ""
            if len(short) == 2 and short[0] == "-" and short[1].isalpha():
                meanings.setdefault(short, set()).add(words[0])
    assert meanings.get("-f") == {"--format"}
    assert {flag: long for flag, long in meanings.items() if len(long) > 1} == {}


def test_runs_show_prints_no_python_values(db: Path) -> None:
    text = invoke(db, "runs", "show", "run-1").stdout
    assert "None" not in text
    wall = next(line for line in text.splitlines() if line.split()[:1] == ["wall_seconds"])
    assert wall.split()[1].endswith("s") and len(wall.split()[1].split(".")[-1]) == 2


def test_db_status_size_agrees_with_its_json(tmp_path: Path) -> None:
    import json as json_module

    path = tmp_path / "new.db"
    # A fresh process, as a user runs it: the size is read while its WAL is not yet folded in.
    table = subprocess.run(
        [sys.executable, "-m", "rebase_cli", "--db", str(path), "db", "status"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "100"},
    ).stdout  # fmt: skip
    shown = next(line for line in table.splitlines() if line.split()[:1] == ["size"])
    size = json_module.loads(invoke(path, "db", "status", "--json").stdout)["size_bytes"]
    assert shown.split()[1] == f"{size / 1024:.1f}", (shown, size)


def test_runs_table_is_legible_at_80_columns(db: Path) -> None:
    result = CliRunner().invoke(app, ["--db", str(db), "runs"], env={"COLUMNS": "80"})
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    row = next(line for line in lines if line.startswith("run-1"))
    assert "rebase" in row and "done" in row and "2/2" in row and "gsm8k" in row
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", row), row
