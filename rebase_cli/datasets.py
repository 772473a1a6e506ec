"""Benchmark datasets: GSM8K and MATH500 by name, or any JSONL file with a field mapping.

Lookup order for a known name: `$REBASE_DATA_DIR/<name>/test.jsonl`, then the user cache, then a
download from the canonical public source, verified against its published sha256 before it is
stored. A file that fails its checksum is never used.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

from rebase_cli.domain import Dataset, Problem
from rebase_cli.errors import DatasetError
from rebase_cli.paths import DATA_DIR_ENV, data_dir_from_env, user_cache_dir

DOWNLOAD_TIMEOUT_S = 60.0
# A problem is a paragraph; a line this long is the wrong file (a dump, a binary), and reading
# it whole would take minutes with nothing to show.
MAX_LINE_BYTES = 16 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class DatasetSource:
    """Where a known dataset comes from and what its bytes must hash to."""

    name: str
    url: str
    sha256: str
    count: int
    description: str


KNOWN_DATASETS: dict[str, DatasetSource] = {
    "gsm8k": DatasetSource(
        name="gsm8k",
        url="https://raw.githubusercontent.com/openai/grade-school-math/"
        "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data/test.jsonl",
        sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        count=1319,
        description="GSM8K test split (openai/grade-school-math)",
    ),
    "math500": DatasetSource(
        name="math500",
        # prm800k stores the file in Git LFS; media.githubusercontent.com serves the object.
        url="https://media.githubusercontent.com/media/openai/prm800k/main/"
        "prm800k/math_splits/test.jsonl",
        sha256="35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
        count=500,
        description="MATH500 test subset (openai/prm800k)",
    ),
}


@dataclass(frozen=True)
class FieldMap:
    """Which JSON fields of a custom JSONL file hold what. None means: try the usual names."""

    question: str | None = None
    answer: str | None = None
    id: str | None = None
    solution: str | None = None

    def __post_init__(self) -> None:
        for option, value in (("--question-field", self.question), ("--answer-field", self.answer)):
            if value is not None and not value.strip():
                raise DatasetError(f"{option} is empty", f"name a JSON field, e.g. {option} q")


QUESTION_FIELDS = ("question", "problem", "prompt", "input")
ANSWER_FIELDS = ("answer", "final_answer", "target", "output")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(name: str) -> Path:
    return user_cache_dir() / "datasets" / name / "test.jsonl"


def candidate_paths(name: str) -> list[Path]:
    """Where a known dataset is looked for, in order (existing or not)."""
    paths = []
    data_dir = data_dir_from_env()
    if data_dir is not None:
        paths.append(data_dir / name / "test.jsonl")
    paths.append(cache_path(name))
    return paths


def verify(path: Path, source: DatasetSource) -> str:
    """The file's sha256, which must match the published one."""
    digest = sha256_of(path)
    if digest != source.sha256:
        raise DatasetError(
            f"{path} does not match the published checksum of {source.name} "
            f"(sha256 {digest[:12]}…, expected {source.sha256[:12]}…)",
            f"delete it and run `rebase datasets download {source.name}`, "
            "or pass your own file with --dataset PATH",
        )
    return digest


def resolve_known(name: str, *, allow_download: bool = True) -> Path:
    """The verified file of a known dataset, downloading it into the cache if needed."""
    source = KNOWN_DATASETS[name]
    for path in candidate_paths(name):
        if path.is_file():
            verify(path, source)
            return path
    if not allow_download:
        raise DatasetError(
            f"dataset {name} is not on this machine",
            f"run `rebase datasets download {name}`",
        )
    return download(name)


def download(name: str) -> Path:
    """Fetch a known dataset into the user cache, verifying its checksum before it is kept."""
    if name not in KNOWN_DATASETS:
        raise DatasetError(f"unknown dataset {name!r}", f"known: {', '.join(KNOWN_DATASETS)}")
    import httpx  # here: only a download needs an HTTP client

    source = KNOWN_DATASETS[name]
    target = cache_path(name)
    try:
        response = httpx.get(source.url, timeout=DOWNLOAD_TIMEOUT_S, follow_redirects=True)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise DatasetError(
            f"cannot download {name} from {source.url} ({type(exc).__name__}: {exc})",
            f"offline? put the file at ${DATA_DIR_ENV}/{name}/test.jsonl "
            "or pass a local file with --dataset PATH",
        ) from None
    digest = hashlib.sha256(response.content).hexdigest()
    if digest != source.sha256:
        raise DatasetError(
            f"the download of {name} from {source.url} does not match its published checksum "
            f"(sha256 {digest[:12]}…, expected {source.sha256[:12]}…); nothing was saved",
            f"retry later, or put a verified copy at ${DATA_DIR_ENV}/{name}/test.jsonl",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(response.content)
    os.replace(partial, target)  # atomic: a crash never leaves a half file under the real name
    return target


def load_dataset(
    spec: str, *, fields: FieldMap | None = None, allow_download: bool = True
) -> Dataset:
    """Load `gsm8k`, `math500`, or a JSONL path into immutable problems."""
    if spec in KNOWN_DATASETS:
        path = resolve_known(spec, allow_download=allow_download)
        parse = _parse_gsm8k if spec == "gsm8k" else _parse_math
        problems = _read_jsonl(path, parse)
        return Dataset(spec, path, KNOWN_DATASETS[spec].sha256, problems)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DatasetError(
            f"unknown dataset {spec!r}: neither a known name nor an existing file",
            f"use one of {', '.join(KNOWN_DATASETS)} or a path to a JSONL file",
        )
    field_map = fields or FieldMap()
    problems = _read_jsonl(path, lambda record, index: _parse_custom(record, index, field_map))
    return Dataset(path.stem, path.resolve(), sha256_of(path), problems)


def _read_jsonl(path: Path, parse) -> tuple[Problem, ...]:  # type: ignore[no-untyped-def]
    """The problems of a JSONL file (gzip-compressed or not; a UTF-8 byte order mark is
    ignored); any line that is not a usable problem is a DatasetError naming file and line."""
    problems: list[Problem] = []
    with path.open("rb") as plain:
        compressed = plain.read(2) == GZIP_MAGIC
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as handle:
            lineno = 0
            while raw := handle.readline(MAX_LINE_BYTES + 1):
                lineno += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise DatasetError(
                        f"{path}:{lineno}: line longer than {MAX_LINE_BYTES // 2**20} MiB",
                        "a dataset holds one problem per line; check that it is the right file",
                    )
                record = _record(path, lineno, raw)
                if record is None:
                    continue
                try:
                    problems.append(parse(record, len(problems)))
                except KeyError as exc:
                    raise DatasetError(
                        f"{path}:{lineno}: {exc.args[0]}",
                        "fix the file, or name the fields with --question-field / --answer-field",
                    ) from None
    except (OSError, EOFError, zlib.error) as exc:
        if not compressed:
            raise
        raise DatasetError(f"{path} is a damaged gzip file ({exc})", "recompress it") from None
    if not problems:
        raise DatasetError(f"{path} holds no problems", "check that it is the right file")
    return tuple(problems)


def _record(path: Path, lineno: int, raw: bytes) -> dict | None:
    """One line as a JSON object; None for a blank line."""
    try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path}:{lineno}: not UTF-8 text (byte {raw[exc.start]:#04x} at column "
            f"{exc.start + 1})",
            "save the file as UTF-8",
        ) from None
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}:{lineno}: not valid JSON ({exc.msg})",
            "each line must be one JSON object",
        ) from None
    if not isinstance(record, dict):
        raise DatasetError(
            f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}",
            "each line must be one JSON object",
        )
    return record


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def gsm8k_final_answer(answer_text: str) -> str:
    """The number after `####` in a GSM8K solution, without thousands separators."""
    match = _GSM8K_FINAL.search(answer_text)
    if match is None:
        raise KeyError("GSM8K answer has no '#### N' line")
    return match.group(1).replace(",", "").strip()


def _require(record: dict, name: str) -> object:
    if name not in record:
        raise KeyError(f"no field {name!r} (fields: {', '.join(sorted(record))})")
    return record[name]


def _text(record: dict, name: str) -> str:
    """The field as text. null, an empty string, true/false, a list or an object is refused:
    `str()` would turn null into the answer "None" and grade every path wrong."""
    value = _require(record, name)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        shown = "null" if value is None else json.dumps(value)[:40]
        raise KeyError(f"field {name!r} is {shown}, not text or a number")
    text = str(value)
    if not text.strip():
        raise KeyError(f"field {name!r} is empty")
    return text


def _parse_gsm8k(record: dict, index: int) -> Problem:
    answer_text = _text(record, "answer")
    solution = answer_text.split("####")[0].rstrip()
    return Problem(
        index=index,
        source_id=f"gsm8k-{index}",
        question=_text(record, "question"),
        reference_answer=gsm8k_final_answer(answer_text),
        solution=solution,
    )


def _parse_math(record: dict, index: int) -> Problem:
    level = record.get("level")
    return Problem(
        index=index,
        source_id=str(record.get("unique_id", f"math500-{index}")),
        question=_text(record, "problem"),
        reference_answer=_text(record, "answer"),
        solution=str(record.get("solution", "")),
        subject=record.get("subject"),
        level=int(level) if isinstance(level, (int, str)) and str(level).isdigit() else None,
    )


def _pick(record: dict, explicit: str | None, usual: tuple[str, ...], what: str) -> str:
    if explicit is not None:
        return _text(record, explicit)
    for name in usual:
        if name in record:
            return _text(record, name)
    raise KeyError(
        f"no {what} field (looked for {', '.join(usual)}; fields: {', '.join(sorted(record))})"
    )


def _parse_custom(record: dict, index: int, fields: FieldMap) -> Problem:
    question = _pick(record, fields.question, QUESTION_FIELDS, "question")
    answer = _pick(record, fields.answer, ANSWER_FIELDS, "answer")
    solution = str(record.get(fields.solution or "solution", ""))
    if "####" in answer:  # a GSM8K-style worked answer
        solution = solution or answer.split("####")[0].rstrip()
        answer = gsm8k_final_answer(answer)
    level = record.get("level")
    return Problem(
        index=index,
        source_id=str(record.get(fields.id or "id", index)),
        question=question,
        reference_answer=answer,
        solution=solution,
        subject=record.get("subject"),
        level=int(level) if isinstance(level, int) else None,
    )


@dataclass(frozen=True)
class DatasetInfo:
    """One row of `rebase datasets list`."""

    name: str
    description: str
    expected_count: int
    path: str | None
    count: int | None
    checksum: str  # "ok", "mismatch", or "missing"


def dataset_listing() -> list[DatasetInfo]:
    """Each known dataset, where it was found and whether its checksum holds (no download)."""
    infos = []
    for name, source in KNOWN_DATASETS.items():
        found = next((p for p in candidate_paths(name) if p.is_file()), None)
        if found is None:
            infos.append(DatasetInfo(name, source.description, source.count, None, None, "missing"))
            continue
        ok = sha256_of(found) == source.sha256
        count = sum(1 for line in found.open(encoding="utf-8") if line.strip())
        infos.append(
            DatasetInfo(
                name,
                source.description,
                source.count,
                str(found),
                count,
                "ok" if ok else "mismatch",
            )
        )
    return infos
