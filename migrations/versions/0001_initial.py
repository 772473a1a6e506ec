"""Initial schema: run, problem, node, allocation, server, grade.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=True, unique=True),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("dataset", sa.String(), nullable=False),
        sa.Column("dataset_sha256", sa.String(), nullable=False),
        sa.Column("budget", sa.Integer(), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("policy_url", sa.String(), nullable=True),
        sa.Column("policy_model", sa.String(), nullable=True),
        sa.Column("reward_url", sa.String(), nullable=True),
        sa.Column("reward_model", sa.String(), nullable=True),
        sa.Column("reward_protocol", sa.String(), nullable=True),
        sa.Column("capabilities_json", sa.Text(), nullable=True),
        sa.Column("simulated", sa.Boolean(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("lease_owner", sa.String(), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("wall_seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_run_fingerprint", "run", ["fingerprint"])

    op.create_table(
        "problem",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("dataset_index", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.String(), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("reference_answer", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("level", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("depth_completed", sa.Integer(), nullable=False),
        sa.Column("policy_prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("policy_completion_tokens", sa.Integer(), nullable=False),
        sa.Column("reward_tokens", sa.Integer(), nullable=False),
        sa.Column("policy_requests", sa.Integer(), nullable=False),
        sa.Column("reward_requests", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("elapsed_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("run_id", "dataset_index"),
    )
    op.create_index("ix_problem_run_id", "problem", ["run_id"])

    op.create_table(
        "node",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "problem_id",
            sa.Integer(),
            sa.ForeignKey("problem.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "parent_id", sa.Integer(), sa.ForeignKey("node.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("path_tokens", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("finish_reason", sa.String(), nullable=True),
        sa.Column("terminal", sa.Boolean(), nullable=False),
        sa.Column("terminal_reason", sa.String(), nullable=True),
        sa.Column("answer", sa.String(), nullable=True),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.UniqueConstraint("problem_id", "depth", "ordinal"),
    )
    op.create_index("ix_node_problem_depth", "node", ["problem_id", "depth"])

    op.create_table(
        "allocation",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "problem_id",
            sa.Integer(),
            sa.ForeignKey("problem.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column(
            "node_id", sa.Integer(), sa.ForeignKey("node.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("children", sa.Integer(), nullable=False),
    )
    op.create_index("ix_allocation_problem_depth", "allocation", ["problem_id", "depth"])

    op.create_table(
        "server",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("engine", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=True),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("command_json", sa.Text(), nullable=False),
        sa.Column("log_path", sa.String(), nullable=True),
        sa.Column("api_key_env", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_server_role", "server", ["role"])

    op.create_table(
        "grade",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("grader_version", sa.String(), nullable=False),
        sa.Column("dataset", sa.String(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.UniqueConstraint("grader_version", "dataset", "reference", "answer"),
    )


def downgrade() -> None:
    raise NotImplementedError("rebase migrations are forward-only")
