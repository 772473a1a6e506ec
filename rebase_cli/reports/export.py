"""Export a run's finished answers, streamed problem by problem.

`jsonl`: one JSON object per problem in dataset order:
  {index, source_id, question, reference, status, error, policy_prompt_tokens,
   policy_completion_tokens, reward_tokens,
   answers: [{node_id, depth, ordinal, terminal_reason, answer, correct, step_scores, text}]}
with answers in (depth, ordinal) order, `step_scores` the scores of the path's nodes from depth 1
down to the answer, `text` the path's steps joined by the template's step delimiter, and
`correct` the cached grader's verdict.

`reference`: the JSON list the paper code's evaluation script (math_evaluate.py) reads:
  [{question, model_answer: [{text, step_scores}], ground_truth_answer, total_tokens}]
Here `text` writes every step followed by the template's PRM step tag and delimiter
("Step 1: ... ки\\n"), the form that script's answer regex expects, and `total_tokens` is the
tokens the policy generated for the problem (its completion tokens).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from rebase_cli.errors import RebaseError
from rebase_cli.prompts import load_template
from rebase_cli.reports.compute import run_config
from rebase_cli.reports.grading_cache import Progress, grade_pairs
from rebase_cli.store.database import Database
from rebase_cli.store.grades import driver_cursor
from rebase_cli.store.models import Run

FORMATS = ("jsonl", "reference")
DEFAULT_LAYOUT_TEMPLATE = "llemma-metamath"

_PROBLEMS = (
    "SELECT id, dataset_index, source_id, question, reference_answer, status, error, "
    "policy_prompt_tokens, policy_completion_tokens, reward_tokens "
    "FROM problem WHERE run_id = ? ORDER BY dataset_index"
)
_ANSWER_PAIRS = (
    "SELECT DISTINCT n.answer, p.reference_answer FROM node AS n "
    "JOIN problem AS p ON p.id = n.problem_id "
    "WHERE p.run_id = ? AND n.terminal = 1 AND n.answer IS NOT NULL"
)
_NODES = (
    "SELECT id, parent_id, depth, ordinal, text, score, terminal, terminal_reason, answer "
    "FROM node WHERE problem_id = ? ORDER BY depth, ordinal"
)


@dataclass(frozen=True)
class PathFormat:
    """How a path's steps become one text: `delimiter` after each step (between steps in
    jsonl), and `step_tag` before it in the reference format."""

    delimiter: str = "\n"
    step_tag: str = " ки"


@dataclass(frozen=True)
class FinishedPath:
    node_id: int
    depth: int
    ordinal: int
    terminal_reason: str | None
    answer: str
    correct: bool | None
    steps: tuple[str, ...]
    step_scores: tuple[float, ...]


@dataclass(frozen=True)
class ProblemExport:
    index: int
    source_id: str
    question: str
    reference: str
    status: str
    error: str | None
    policy_prompt_tokens: int
    policy_completion_tokens: int
    reward_tokens: int
    answers: tuple[FinishedPath, ...]


def path_format(run: Run) -> PathFormat:
    """The step delimiter and PRM step tag of the run's template (the paper's, if unknown)."""
    name = run_config(run).get("template") or DEFAULT_LAYOUT_TEMPLATE
    try:
        template = load_template(str(name))
    except RebaseError:  # a template file that moved or no longer parses: the defaults
        return PathFormat()
    # A template with depth-dependent stops keeps each step's own line break in its text.
    delimiter = "" if template.next_step_stop is not None else template.step_delimiter
    return PathFormat(delimiter, template.prm.step_tag)


def export_run(
    db: Database, run: Run, fmt: str, out: TextIO, progress: Progress | None = None
) -> int:
    """Write the export of `run` in `fmt` ("jsonl" or "reference") to `out`; returns the
    number of problems written."""
    verdicts = _grade_all(db, run, progress)
    layout = path_format(run)
    written = 0
    if fmt == "reference":
        out.write("[")
    for problem in iter_problems(db, run, verdicts):
        if fmt == "jsonl":
            out.write(json.dumps(jsonl_record(problem, layout), ensure_ascii=False) + "\n")
        else:
            item = json.dumps(reference_record(problem, layout), ensure_ascii=False)
            out.write(("," if written else "") + "\n" + item)
        written += 1
    if fmt == "reference":
        out.write("\n]\n")
    return written


def jsonl_record(problem: ProblemExport, layout: PathFormat) -> dict:
    return {
        "index": problem.index,
        "source_id": problem.source_id,
        "question": problem.question,
        "reference": problem.reference,
        "status": problem.status,
        "error": problem.error,
        "policy_prompt_tokens": problem.policy_prompt_tokens,
        "policy_completion_tokens": problem.policy_completion_tokens,
        "reward_tokens": problem.reward_tokens,
        "answers": [
            {
                "node_id": a.node_id,
                "depth": a.depth,
                "ordinal": a.ordinal,
                "terminal_reason": a.terminal_reason,
                "answer": a.answer,
                "correct": a.correct,
                "step_scores": list(a.step_scores),
                "text": layout.delimiter.join(a.steps),
            }
            for a in problem.answers
        ],
    }


def reference_record(problem: ProblemExport, layout: PathFormat) -> dict:
    return {
        "question": problem.question,
        "model_answer": [
            {
                "text": "".join(step + layout.step_tag + layout.delimiter for step in a.steps),
                "step_scores": list(a.step_scores),
            }
            for a in problem.answers
        ],
        "ground_truth_answer": problem.reference,
        "total_tokens": problem.policy_completion_tokens,
    }


def iter_problems(
    db: Database, run: Run, verdicts: dict[tuple[str, str], bool]
) -> Iterator[ProblemExport]:
    """The run's problems in dataset order with their finished paths (one query each)."""
    with db.read() as session:
        cursor = driver_cursor(session)
        try:
            problems = cursor.execute(_PROBLEMS, (run.id,)).fetchall()
            for problem in problems:
                nodes = cursor.execute(_NODES, (problem[0],)).fetchall()
                yield _problem(problem, nodes, verdicts)
        finally:
            cursor.close()


def _grade_all(db: Database, run: Run, progress: Progress | None) -> dict[tuple[str, str], bool]:
    with db.read() as session:
        cursor = driver_cursor(session)
        try:
            pairs = [tuple(row) for row in cursor.execute(_ANSWER_PAIRS, (run.id,)).fetchall()]
        finally:
            cursor.close()
    verdicts, _ = grade_pairs(db, run.dataset, pairs, progress)  # type: ignore[arg-type]
    return verdicts


def _problem(
    problem: tuple, nodes: list[tuple], verdicts: dict[tuple[str, str], bool]
) -> ProblemExport:
    _, index, source_id, question, reference, status, error, prompt_t, completion_t, reward_t = (
        problem
    )
    by_id = {row[0]: row for row in nodes}
    answers = []
    for node_id, _, depth, ordinal, _, _, terminal, reason, answer in nodes:
        if not terminal or answer is None:
            continue
        path = _path(by_id, node_id)
        answers.append(
            FinishedPath(
                node_id=node_id,
                depth=depth,
                ordinal=ordinal,
                terminal_reason=reason,
                answer=answer,
                correct=verdicts.get((answer, reference)),
                steps=tuple(step[4] for step in path),
                step_scores=tuple(step[5] for step in path),
            )
        )
    return ProblemExport(
        index,
        source_id,
        question,
        reference,
        status,
        error,
        prompt_t,
        completion_t,
        reward_t,
        tuple(answers),
    )


def _path(by_id: dict[int, tuple], node_id: int) -> list[tuple]:
    """The node rows from depth 1 down to `node_id` (the root is left out)."""
    path = []
    current = by_id.get(node_id)
    while current is not None and current[2] > 0:
        path.append(current)
        current = by_id.get(current[1])
    path.reverse()
    return path
