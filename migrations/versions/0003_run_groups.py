"""Run groups (sweeps) and named score sets.

A sweep is stored as a `run_group` row holding the plan it was started with (dataset, options,
methods and budgets, endpoints as given, never API keys), so `rebase search --group NAME` can
finish it, creating the runs a crash kept from starting. Each run of a sweep names its group in
`run.group_name`.

A score set holds the step scores a second PRM gave to every node of a stored run
(`rebase rescore`), so answers can be selected with another verifier without regenerating.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "run_group",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.add_column("run", sa.Column("group_name", sa.String(), nullable=True))
    op.create_index("ix_run_group_name", "run", ["group_name"])

    op.create_table(
        "score_set",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("run.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("reward_url", sa.String(), nullable=False),
        sa.Column("reward_model", sa.String(), nullable=True),
        sa.Column("reward_protocol", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("run_id", "name"),
    )
    op.create_table(
        "node_score",
        sa.Column(
            "score_set_id",
            sa.Integer(),
            sa.ForeignKey("score_set.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "node_id",
            sa.Integer(),
            sa.ForeignKey("node.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("score", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("node_score")
    op.drop_table("score_set")
    op.drop_index("ix_run_group_name", "run")
    op.drop_column("run", "group_name")
    op.drop_table("run_group")
