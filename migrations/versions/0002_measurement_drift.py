"""Measurements record their batch's drift: the reference subnet's spread and a flag.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("drift", sa.Float(), nullable=True))
        batch.add_column(sa.Column("flagged", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("flagged")
        batch.drop_column("drift")
