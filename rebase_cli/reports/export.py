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
from dataclasses import dataclass, fields
from typing import TextIO

from rebase_cli.errors import RebaseError
from rebase_cli.prompts import load_template
from rebase_cli.records import NodeRecord, ProblemNodes, ProblemRecord, RunRecord
from rebase_cli.reports.grading_cache import Progress, grade_pairs
from rebase_cli.store.database import Database
from rebase_cli.store.reader import RunReader, run_record

FORMATS = ("jsonl", "reference")
DEFAULT_LAYOUT_TEMPLATE = "llemma-metamath"


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
class ProblemExport(ProblemRecord):
    """A problem with its finished paths in (depth, ordinal) order."""

    answers: tuple[FinishedPath, ...] = ()


def path_format(run: RunRecord) -> PathFormat:
    """The step delimiter and PRM step tag of the run's template (the paper's, if unknown)."""
    name = run.config.get("template") or DEFAULT_LAYOUT_TEMPLATE
    try:
        template = load_template(str(name))
    except RebaseError:  # a template file that moved or no longer parses: the defaults
        return PathFormat()
    # A template with depth-dependent stops keeps each step's own line break in its text.
    delimiter = "" if template.next_step_stop is not None else template.step_delimiter
    return PathFormat(delimiter, template.prm.step_tag)


def export_run(
    db: Database, run: RunRecord, fmt: str, out: TextIO, progress: Progress | None = None
) -> int:
    """Write the export of `run` in `fmt` ("jsonl" or "reference") to `out`; returns the
    number of problems written."""
    run = run_record(run)
    verdicts, _ = grade_pairs(db, run.dataset, RunReader(db).answer_pairs(run.id), progress)
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
    db: Database, run: RunRecord, verdicts: dict[tuple[str, str], bool]
) -> Iterator[ProblemExport]:
    """The run's problems in dataset order with their finished paths (one query each)."""
    for stored in RunReader(db).iter_problem_nodes(run.id):
        yield _problem(stored, verdicts)


def _problem(stored: ProblemNodes, verdicts: dict[tuple[str, str], bool]) -> ProblemExport:
    problem = stored.problem
    by_id = {node.id: node for node in stored.nodes}
    answers = []
    for node in stored.nodes:
        if not node.terminal or node.answer is None:
            continue
        path = _path(by_id, node.id)
        answers.append(
            FinishedPath(
                node_id=node.id,
                depth=node.depth,
                ordinal=node.ordinal,
                terminal_reason=node.terminal_reason,
                answer=node.answer,
                correct=verdicts.get((node.answer, problem.reference)),
                steps=tuple(step.text for step in path),
                step_scores=tuple(step.score for step in path),
            )
        )
    return ProblemExport(
        **{f.name: getattr(problem, f.name) for f in fields(ProblemRecord)},
        answers=tuple(answers),
    )


def _path(by_id: dict[int, NodeRecord], node_id: int) -> list[NodeRecord]:
    """The nodes from depth 1 down to `node_id` (the root is left out)."""
    path = []
    current = by_id.get(node_id)
    while current is not None and current.depth > 0:
        path.append(current)
        current = by_id.get(current.parent_id) if current.parent_id is not None else None
    path.reverse()
    return path
