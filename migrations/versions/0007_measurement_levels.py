"""Measurements record their batch's reference level, so values can be rescaled to the device's.

A latency batch times a reference subnet in every round; its median there (``reference_ms``)
is the level the batch's values are on, and ``reference_arch`` says which subnet it was. Fits
rescale every batch to the device's long-run level (:mod:`search_service.levels`); rows without a
level (older rows, imported tables) stay null and are used as measured.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("reference_arch", sa.String(256), nullable=True))
        batch.add_column(sa.Column("reference_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("reference_ms")
        batch.drop_column("reference_arch")
