"""Named score sets: another PRM's scores of a run's nodes. Each public function is exactly
one transaction; the scores of one level of one problem are written together. The reports'
queries on score sets (lookup, coverage, listing) are in `store/reader.py`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import col, select

from rebase_cli.errors import ConfigError
from rebase_cli.records import ScoreSetRecord
from rebase_cli.store.database import Database
from rebase_cli.store.models import NodeRow, NodeScore, ScoreSet
from rebase_cli.store.reader import RunReader


def open_score_set(
    db: Database, run_id: int, name: str, url: str, model: str | None, protocol: str
) -> ScoreSet:
    """The run's score set `name`, created if new. Continuing a set with another reward model
    or protocol is refused: its scores would mix two verifiers."""
    with db.write() as session:
        found = session.exec(
            select(ScoreSet).where(ScoreSet.run_id == run_id, ScoreSet.name == name)
        ).first()
        if found is not None:
            if (found.reward_model, found.reward_protocol) != (model, protocol):
                raise ConfigError(
                    f"score set {name!r} of run-{run_id} holds scores of {found.reward_model} "
                    f"({found.reward_protocol}), not {model} ({protocol})",
                    "choose another --name for this reward model",
                )
            found.reward_url = url
            found.status, found.error = "running", None
            session.add(found)
            session.flush()
            session.refresh(found)
            return found
        created = ScoreSet(
            run_id=run_id, name=name, reward_url=url, reward_model=model, reward_protocol=protocol
        )
        session.add(created)
        session.flush()
        session.refresh(created)
        return created


def get_score_set(db: Database, run_id: int, name: str) -> ScoreSetRecord:
    """The run's score set `name` as the reader returns it (NotFoundError if missing)."""
    return RunReader(db).score_set(run_id, name)


def scored_nodes(db: Database, score_set_id: int, problem_id: int) -> dict[int, float]:
    """node id → score in the set, for one problem."""
    with db.read() as session:
        rows = session.exec(
            select(NodeScore.node_id, NodeScore.score)
            .join(NodeRow, col(NodeRow.id) == col(NodeScore.node_id))
            .where(NodeScore.score_set_id == score_set_id, NodeRow.problem_id == problem_id)
        ).all()
        return {int(node_id): float(score) for node_id, score in rows}


def add_scores(db: Database, score_set_id: int, scores: Sequence[tuple[int, float]]) -> None:
    """Store the scores of one level (all or nothing)."""
    with db.write() as session:
        for node_id, score in scores:
            session.add(NodeScore(score_set_id=score_set_id, node_id=node_id, score=score))


def set_status(db: Database, score_set_id: int, status: str, error: str | None = None) -> None:
    with db.write() as session:
        found = session.get(ScoreSet, score_set_id)
        if found is not None:
            found.status, found.error = status, error
            session.add(found)
