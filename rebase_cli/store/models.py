"""SQLModel tables. The schema itself is owned by the alembic scripts in `migrations/`;
these classes must match them (a test compares the two)."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Timezone-aware UTC now (the column type stores UTC and refuses naive values)."""
    return datetime.now(timezone.utc)


def stored_now() -> str:
    """utcnow() as SQLAlchemy writes it into a DateTime column on SQLite, for the statements
    that bypass the ORM (the level commit): the same text, so both read back equal."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


class Run(SQLModel, table=True):
    """One search over one dataset. `run-42` is the run with id 42."""

    __tablename__ = "run"

    id: int | None = Field(default=None, primary_key=True)
    name: str | None = Field(default=None, unique=True)
    method: str
    dataset: str
    dataset_sha256: str
    budget: int
    config_json: str = Field(sa_column=Column(Text, nullable=False))
    fingerprint: str = Field(index=True)
    policy_url: str | None = None
    policy_model: str | None = None
    reward_url: str | None = None
    reward_model: str | None = None
    reward_protocol: str | None = None
    capabilities_json: str | None = Field(default=None, sa_column=Column(Text))
    simulated: bool = False
    seed: int = 0
    status: str = "running"
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    wall_seconds: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    group_name: str | None = Field(default=None, index=True)


class RunGroup(SQLModel, table=True):
    """A sweep: several runs started by one `rebase search`, and the plan that makes them
    (`spec_json`, see runner/sweep.py), so the sweep can be finished after a crash."""

    __tablename__ = "run_group"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    spec_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class ProblemRow(SQLModel, table=True):
    """A problem of a run. `depth_completed` is the last depth committed (-1: not started)."""

    __tablename__ = "problem"
    __table_args__ = (UniqueConstraint("run_id", "dataset_index"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE", index=True)
    dataset_index: int
    source_id: str
    question: str = Field(sa_column=Column(Text, nullable=False))
    reference_answer: str
    subject: str | None = None
    level: int | None = None
    status: str = "pending"
    error: str | None = Field(default=None, sa_column=Column(Text))
    depth_completed: int = -1
    policy_prompt_tokens: int = 0
    policy_completion_tokens: int = 0
    reward_tokens: int = 0
    policy_requests: int = 0
    reward_requests: int = 0
    retries: int = 0
    elapsed_seconds: float = 0.0
    started_at: datetime | None = None
    finished_at: datetime | None = None


class NodeRow(SQLModel, table=True):
    """A node of a problem's tree; the root (depth 0) holds no text and score 1.0.

    (problem_id, depth, ordinal) identifies a node independently of insertion interleaving
    across problems, which keeps resumed trees comparable with uninterrupted ones."""

    __tablename__ = "node"
    __table_args__ = (
        UniqueConstraint("problem_id", "depth", "ordinal"),
        Index("ix_node_problem_depth", "problem_id", "depth"),
    )

    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id", ondelete="CASCADE")
    parent_id: int | None = Field(default=None, foreign_key="node.id", ondelete="CASCADE")
    depth: int
    ordinal: int
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    score: float
    path_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    terminal: bool = False
    terminal_reason: str | None = None
    answer: str | None = None
    seed: int | None = None


class AllocationRow(SQLModel, table=True):
    """A search decision: node `node_id` at `depth` got `children` children (resampled copies
    for particle filtering) with share `weight` (REBASE's softmax share, the resampling
    probability, or the uniform share of a kept beam). Pruned nodes are recorded with
    children = 0. `subtree` is the DVTS subtree of the node (None for other methods)."""

    __tablename__ = "allocation"
    __table_args__ = (Index("ix_allocation_problem_depth", "problem_id", "depth"),)

    id: int | None = Field(default=None, primary_key=True)
    problem_id: int = Field(foreign_key="problem.id", ondelete="CASCADE")
    depth: int
    node_id: int = Field(foreign_key="node.id", ondelete="CASCADE")
    weight: float
    children: int
    subtree: int | None = None


class ServerRow(SQLModel, table=True):
    """A model server started by `rebase serve --detach`."""

    __tablename__ = "server"

    id: int | None = Field(default=None, primary_key=True)
    role: str = Field(index=True)
    engine: str
    model: str | None = None
    url: str
    host: str
    port: int
    pid: int
    command_json: str = Field(sa_column=Column(Text, nullable=False))
    log_path: str | None = None
    api_key_env: str | None = None
    status: str = "running"
    started_at: datetime = Field(default_factory=utcnow)


class GradeRow(SQLModel, table=True):
    """Cached verdict of the grader (`grader_version`) on (reference, answer)."""

    __tablename__ = "grade"
    __table_args__ = (UniqueConstraint("grader_version", "dataset", "reference", "answer"),)

    id: int | None = Field(default=None, primary_key=True)
    grader_version: str
    dataset: str
    reference: str = Field(sa_column=Column(Text, nullable=False))
    answer: str = Field(sa_column=Column(Text, nullable=False))
    correct: bool
    reason: str | None = None


class ScoreSet(SQLModel, table=True):
    """Step scores of a run's nodes from another PRM (`rebase rescore`), under a name.
    `status`: running until every node is scored, then done; failed with `error`."""

    __tablename__ = "score_set"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", ondelete="CASCADE")
    name: str
    reward_url: str
    reward_model: str | None = None
    reward_protocol: str
    status: str = "running"
    error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow)


class NodeScore(SQLModel, table=True):
    """The score of one node in one score set."""

    __tablename__ = "node_score"

    score_set_id: int = Field(foreign_key="score_set.id", ondelete="CASCADE", primary_key=True)
    node_id: int = Field(foreign_key="node.id", ondelete="CASCADE", primary_key=True)
    score: float
