"""Allocation rows record the subtree of strategies that split the budget (DVTS).

The `allocation` table is every method's decision table: which node was kept (children > 0),
how many children or resampled copies it got, with which weight (softmax share, resampling
probability, or uniform share of a kept beam), and now for DVTS which of the independent
subtrees it belongs to. Rows written before this revision read as subtree NULL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN of a nullable column needs no table copy in SQLite.
    op.add_column("allocation", sa.Column("subtree", sa.Integer(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("rebase migrations are forward-only")
