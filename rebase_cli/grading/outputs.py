"""Grading a JSONL file of model outputs (the service behind `rebase grade`).

Each line is one JSON object with `output` (the generated text, or null) and a way to find the
reference: `reference` itself, or `idx` (0-based index into the dataset), or `question` (matched
exactly against the dataset's questions). An explicit `reference` wins over `idx`/`question`.
The whole file is validated before anything is graded, so a bad line fails fast, naming the
file and line.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rebase_cli.datasets import load_dataset
from rebase_cli.domain import Dataset
from rebase_cli.errors import DatasetError, UsageError
from rebase_cli.grading.equivalence import GENERIC, Verdict, grade_many, grading_style
from rebase_cli.grading.extract import extract_answer
from rebase_cli.grading.safe import DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class OutputLine:
    """One validated line of an outputs file."""

    line: int
    output: str | None
    idx: int | None = None
    question: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class GradedOutput:
    """One graded line: what was extracted, what it was compared with, and the verdict."""

    line: int
    idx: int | None
    question: str | None
    extracted: str | None
    reference: str
    verdict: Verdict


@dataclass(frozen=True)
class GradeReport:
    """All graded lines of a file, in file order."""

    path: Path
    dataset: str | None
    style: str
    results: tuple[GradedOutput, ...]

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def correct(self) -> int:
        return sum(result.verdict.correct for result in self.results)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def reasons(self) -> Counter[str]:
        """How often each reason made an answer incorrect."""
        return Counter(
            result.verdict.reason or "not equal"
            for result in self.results
            if not result.verdict.correct
        )


def read_outputs(path: Path) -> list[OutputLine]:
    """Parse and validate every line; `DatasetError` names the first bad line."""
    if not path.is_file():
        raise DatasetError(f"{path}: no such file", "pass a JSONL file of model outputs")
    lines = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if text.strip():
                lines.append(_parse_line(path, number, text))
    if not lines:
        raise DatasetError(f"{path} holds no outputs", "one JSON object per line")
    return lines


def _parse_line(path: Path, number: int, text: str) -> OutputLine:
    where = f"{path}:{number}"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "output" not in record:
        raise DatasetError(f"{where}: no field 'output'", "each line needs the model's output")
    output = record["output"]
    if output is not None and not isinstance(output, str):
        raise DatasetError(f"{where}: 'output' must be a string, got {type(output).__name__}")
    reference = record.get("reference")
    if reference is not None:
        if isinstance(reference, bool) or not isinstance(reference, (str, int, float)):
            raise DatasetError(f"{where}: 'reference' must be a string or a number")
        reference = str(reference)
    idx = record.get("idx")
    if idx is not None and (isinstance(idx, bool) or not isinstance(idx, int)):
        raise DatasetError(f"{where}: 'idx' must be an integer, got {json.dumps(idx)}")
    question = record.get("question")
    if question is not None and not isinstance(question, str):
        raise DatasetError(f"{where}: 'question' must be a string")
    if reference is None and idx is None and question is None:
        raise DatasetError(
            f"{where}: no 'reference', 'idx' or 'question'",
            "each line needs the reference answer or a way to find it in --dataset",
        )
    return OutputLine(number, output, idx, question, reference)


def attach_references(
    path: Path, lines: list[OutputLine], dataset: Dataset | None
) -> list[tuple[OutputLine, str]]:
    """Each line with its reference answer, looked up in `dataset` where the line has none."""
    by_question: dict[str, str] | None = None
    attached = []
    for line in lines:
        if line.reference is not None:
            attached.append((line, line.reference))
            continue
        where = f"{path}:{line.line}"
        if dataset is None:
            raise UsageError(
                f"{where}: refers to the dataset by {'idx' if line.idx is not None else 'question'}"
                " but no dataset was given",
                "pass --dataset gsm8k|math500|PATH",
            )
        if line.idx is not None:
            if not 0 <= line.idx < len(dataset):
                raise DatasetError(
                    f"{where}: idx {line.idx} is out of range "
                    f"({dataset.name} has {len(dataset)} problems, idx 0..{len(dataset) - 1})"
                )
            attached.append((line, dataset.problems[line.idx].reference_answer))
            continue
        if by_question is None:
            by_question = {p.question.strip(): p.reference_answer for p in dataset.problems}
        assert line.question is not None
        reference = by_question.get(line.question.strip())
        if reference is None:
            raise DatasetError(
                f"{where}: question not found in {dataset.name}",
                "questions must match the dataset's text exactly; or give 'idx'",
            )
        attached.append((line, reference))
    return attached


def grade_outputs(
    path: Path,
    dataset_spec: str | None,
    *,
    answer_regex: str | None = None,
    last_number_fallback: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_progress: Callable[[int, int], None] | None = None,
) -> GradeReport:
    """Validate, extract and grade every line of `path` (see module docstring)."""
    if answer_regex is not None:
        try:
            re.compile(answer_regex)
        except re.error as exc:
            raise UsageError(f"--answer-regex is not a valid regular expression ({exc})") from None
    lines = read_outputs(path)
    dataset = load_dataset(dataset_spec) if dataset_spec is not None else None
    attached = attach_references(path, lines, dataset)
    extracted = [
        extract_answer(
            line.output or "", answer_regex=answer_regex, last_number_fallback=last_number_fallback
        )
        for line, _ in attached
    ]
    style_name = dataset.name if dataset is not None else GENERIC
    verdicts = grade_many(
        [(answer, reference) for answer, (_, reference) in zip(extracted, attached, strict=True)],
        style_name,
        timeout_s=timeout_s,
        on_progress=on_progress,
    )
    results = tuple(
        GradedOutput(line.line, line.idx, line.question, answer, reference, verdict)
        for (line, reference), answer, verdict in zip(attached, extracted, verdicts, strict=True)
    )
    return GradeReport(
        path=path,
        dataset=dataset.name if dataset is not None else None,
        style=grading_style(style_name),
        results=results,
    )
