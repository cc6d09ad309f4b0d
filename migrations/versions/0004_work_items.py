"""Background work is recorded in SQL, and a predictor version can be a posterior update.

``work_items`` holds one row per unit of background work (a fit of a target's data version, or a
front of a pair of predictor versions): a scheduling pass dispatches what has no row yet, so that
work is dispatched once however many processes notice it, and a failure recorded by a worker on
another machine is what every API process reports. ``predictor_versions.update_of`` names the full
fit whose hyperparameters a version keeps, its posterior conditioned on newer data.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 13:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "work_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("space", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_work_items"),
        sa.UniqueConstraint("key", name="uq_work_items_key"),
    )
    op.create_index("ix_work_items_space_kind", "work_items", ["space", "kind", "status"])
    with op.batch_alter_table("predictor_versions") as batch:
        batch.add_column(sa.Column("update_of", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_predictor_versions_update_of_predictor_versions", "predictor_versions", ["update_of"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("predictor_versions") as batch:
        batch.drop_constraint("fk_predictor_versions_update_of_predictor_versions", type_="foreignkey")
        batch.drop_column("update_of")
    op.drop_index("ix_work_items_space_kind", table_name="work_items")
    op.drop_table("work_items")
