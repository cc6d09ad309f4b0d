"""Artifacts: deployable files built from a subnet or a deployment with named weights.

One row per built file (``POST /v1/artifacts``): the file is stored by its SHA-256 (``digest``)
under the server's data directory; ``request_key`` is the SHA-256 of the canonical request (space,
arch or tasks, input, weights, precision), so that an equal request finds the built file.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_key", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_abs_diff", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
        sa.UniqueConstraint("request_key", name="uq_artifacts_request_key"),
    )
    op.create_index("ix_artifacts_digest", "artifacts", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_artifacts_digest", table_name="artifacts")
    op.drop_table("artifacts")
