"""Answers of deployment queries (``POST /v1/deployments/query``), one per request and predictors.

A deployment query is a search of seconds; its answer is stored under a key made of the request
and the predictor versions it was computed from, so the same question on the same predictors is
answered from this table (and the same way) until a refit changes a predictor.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_deployment_answers"),
        sa.UniqueConstraint("key", name="uq_deployment_answers_key"),
    )


def downgrade() -> None:
    op.drop_table("deployment_answers")
