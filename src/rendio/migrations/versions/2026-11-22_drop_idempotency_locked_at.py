"""drop idempotency_log.locked_at (never written: an advisory lock marks a key in flight)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_column("idempotency_log", "locked_at")


def downgrade() -> None:
    op.add_column(
        "idempotency_log",
        sa.Column("locked_at", sa.DateTime(timezone=True), autoincrement=False, nullable=True),
    )
