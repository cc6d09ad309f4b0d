"""Tokens get a label, an expiry and a revocation time; measurements can be retracted.

A retracted measurement keeps its row (the audit trail: when and why); refits and listings leave
it out. A predictor version records how many live measurements it was fitted on, so that a
retraction (which adds no newer id) still makes its target stale.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 10:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("label", sa.String(128), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("retracted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("retracted_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("predictor_versions") as batch:
        batch.add_column(sa.Column("n_measurements", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predictor_versions") as batch:
        batch.drop_column("n_measurements")
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("retracted_reason")
        batch.drop_column("retracted_at")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("label")
