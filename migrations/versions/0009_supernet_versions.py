"""Supernet weights are a registered, versioned resource, and scores name the version they used.

``supernet_versions`` holds one row per registered checkpoint of a space (its sha256 names the
stored file); ``measurements.supernet_version`` is the version a score was measured with (null for
latencies, which do not depend on the weights, and for the scores stored before this revision).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "supernet_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_supernet_versions"),
        sa.UniqueConstraint("space", "version", name="uq_supernet_versions_space_version"),
        sa.UniqueConstraint("space", "sha256", name="uq_supernet_versions_space_sha256"),
    )
    with op.batch_alter_table("measurements") as batch:
        batch.add_column(sa.Column("supernet_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("measurements") as batch:
        batch.drop_column("supernet_version")
    op.drop_table("supernet_versions")
