"""Dataset lookup order, checksum verification, downloads, offline errors, parsing."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rebase_cli import datasets
from rebase_cli.cli.app import app
from rebase_cli.datasets import FieldMap, load_dataset
from rebase_cli.errors import DatasetError
from tests.conftest import SHARED_DATA

GSM8K_BYTES = (SHARED_DATA / "gsm8k" / "test.jsonl").read_bytes()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on a free port serving the files of a folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(root), **k
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def _point_source(monkeypatch, url: str) -> None:
    source = dataclasses.replace(datasets.KNOWN_DATASETS["gsm8k"], url=url)
    monkeypatch.setitem(datasets.KNOWN_DATASETS, "gsm8k", source)


def test_known_datasets_load_with_their_fields() -> None:
    gsm8k = load_dataset("gsm8k")
    assert len(gsm8k) == 1319
    assert gsm8k.problems[0].reference_answer == "18"
    assert "####" not in gsm8k.problems[0].solution
    math500 = load_dataset("math500")
    assert len(math500) == 500
    first = math500.problems[0]
    assert first.subject and first.level in range(1, 6) and first.source_id.startswith("test/")


def test_data_dir_comes_before_the_user_cache(tmp_path: Path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "gsm8k").mkdir(parents=True)
    shutil.copy(SHARED_DATA / "gsm8k" / "test.jsonl", data_dir / "gsm8k" / "test.jsonl")
    monkeypatch.setenv("REBASE_DATA_DIR", str(data_dir))
    cache = datasets.cache_path("gsm8k")
    cache.parent.mkdir(parents=True)
    cache.write_text("corrupt cache that must not be read\n")
    assert load_dataset("gsm8k").path == data_dir / "gsm8k" / "test.jsonl"


def test_user_cache_is_used_when_no_data_dir(monkeypatch) -> None:
    monkeypatch.delenv("REBASE_DATA_DIR")
    cache = datasets.cache_path("gsm8k")
    cache.parent.mkdir(parents=True)
    cache.write_bytes(GSM8K_BYTES)
    assert load_dataset("gsm8k", allow_download=False).path == cache


def test_checksum_mismatch_in_data_dir_is_refused(tmp_path: Path, monkeypatch) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "gsm8k").mkdir(parents=True)
    (data_dir / "gsm8k" / "test.jsonl").write_bytes(GSM8K_BYTES[:-10])
    monkeypatch.setenv("REBASE_DATA_DIR", str(data_dir))
    with pytest.raises(DatasetError, match="does not match the published checksum"):
        load_dataset("gsm8k")


def test_download_verifies_and_caches(file_server, monkeypatch) -> None:
    url, root = file_server
    (root / "test.jsonl").write_bytes(GSM8K_BYTES)
    monkeypatch.delenv("REBASE_DATA_DIR")
    _point_source(monkeypatch, f"{url}/test.jsonl")
    dataset = load_dataset("gsm8k")
    assert dataset.path == datasets.cache_path("gsm8k") and len(dataset) == 1319
    assert hashlib.sha256(dataset.path.read_bytes()).hexdigest() == dataset.sha256


def test_download_with_wrong_checksum_saves_nothing(file_server, monkeypatch) -> None:
    url, root = file_server
    (root / "test.jsonl").write_bytes(GSM8K_BYTES.replace(b"18", b"19", 1))
    monkeypatch.delenv("REBASE_DATA_DIR")
    _point_source(monkeypatch, f"{url}/test.jsonl")
    with pytest.raises(DatasetError, match="nothing was saved"):
        load_dataset("gsm8k")
    assert not datasets.cache_path("gsm8k").exists()


def test_offline_error_names_data_dir_and_dataset_path(monkeypatch) -> None:
    monkeypatch.delenv("REBASE_DATA_DIR")
    _point_source(monkeypatch, "http://127.0.0.1:9/unreachable.jsonl")
    with pytest.raises(DatasetError) as caught:
        load_dataset("gsm8k")
    line = caught.value.one_line()
    assert "REBASE_DATA_DIR" in line and "--dataset PATH" in line


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"question": "q1", "answer": "1"}\n{"question": "q2", "answer": \n')
    with pytest.raises(DatasetError, match=r"mine.jsonl:2: not valid JSON"):
        load_dataset(str(path))


def test_missing_field_names_the_fields_present(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"q": "q1", "a": "1"}\n')
    with pytest.raises(DatasetError, match=r"mine.jsonl:1: no question field.*fields: a, q"):
        load_dataset(str(path))
    mapped = load_dataset(str(path), fields=FieldMap(question="q", answer="a"))
    assert mapped.problems[0].question == "q1" and mapped.problems[0].reference_answer == "1"


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(DatasetError, match="holds no problems"):
        load_dataset(str(path))


def test_custom_gsm8k_style_answers_are_reduced_to_the_final_number(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "2 + 2 = 4\n#### 1,004"}) + "\n")
    problem = load_dataset(str(path)).problems[0]
    assert problem.reference_answer == "1004" and problem.solution == "2 + 2 = 4"


def test_unknown_name_is_a_one_line_cli_error() -> None:
    result = CliRunner().invoke(app, ["datasets", "download", "mmlu"])
    assert result.exit_code == 1
    assert "unknown dataset 'mmlu'" in result.output
    assert "Traceback" not in result.output


def test_datasets_list_shows_counts_and_checksum_status() -> None:
    result = CliRunner().invoke(app, ["datasets", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["gsm8k"]["count"] == 1319 and rows["gsm8k"]["checksum"] == "ok"
    assert rows["math500"]["count"] == 500 and rows["math500"]["checksum"] == "ok"
