"""Work items record their worker's heartbeat, so lost work is seen as lost within seconds.

A worker running a task stamps ``heartbeat_at`` every ``heartbeat_interval_s``; a scheduling pass
dispatches running work whose stamp is older than ``heartbeat_timeout_s`` again (its worker was
killed, and a Redis broker would redeliver the task only after its visibility timeout). Rows
without a stamp (running in process, or on a worker of an older version) keep waiting for
``dispatch_timeout_s`` as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("work_items") as batch:
        batch.drop_column("heartbeat_at")
