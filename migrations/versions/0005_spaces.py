"""Search spaces defined as data: one row per registered space, its definition as JSON.

Presets stay built in (never stored). A registered space only ever gains tasks, which bumps
``version`` and ``updated_at``; nothing stored under the space refers to its tasks' list.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "spaces",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        # JSON text: JSONB would reorder the keys of "choices", whose order is the subnets' layout.
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_spaces"),
        sa.UniqueConstraint("name", name="uq_spaces_name"),
    )


def downgrade() -> None:
    op.drop_table("spaces")
