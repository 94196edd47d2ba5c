"""history and retention: media_expired_at, indexes for the retention scans

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "video_jobs", sa.Column("media_expired_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_video_jobs_media_stored",
        "video_jobs",
        ["completed_at"],
        postgresql_where=sa.text("video_url IS NOT NULL OR thumbnail_url IS NOT NULL"),
    )
    op.create_index(
        "ix_video_jobs_deleted_at",
        "video_jobs",
        ["deleted_at"],
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_webhook_deliveries_received_at"), "webhook_deliveries", ["received_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_received_at"), table_name="webhook_deliveries")
    op.drop_index("ix_video_jobs_deleted_at", table_name="video_jobs")
    op.drop_index("ix_video_jobs_media_stored", table_name="video_jobs")
    op.drop_column("video_jobs", "media_expired_at")
