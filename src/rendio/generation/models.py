"""The table of generation: video jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base, Timestamps


class VideoJob(Timestamps, Base):
    __tablename__ = "video_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processing', 'completed', 'failed')", name="status_known"
        ),
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_percent"),
        CheckConstraint("credits_used >= 0", name="credits_used_non_negative"),
        # History: newest first per user, keyset on (created_at, job_id); the partial
        # index keeps the common "not deleted" listing small and flat in table size.
        Index(
            "ix_video_jobs_user_active",
            "user_id",
            text("created_at DESC"),
            text("job_id DESC"),
            postgresql_where=text("deleted_at IS NULL"),
        ),
        Index(
            "ix_video_jobs_user_deleted",
            "user_id",
            text("created_at DESC"),
            text("job_id DESC"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
        # The sweeper looks only at unfinished jobs.
        Index(
            "ix_video_jobs_unfinished",
            "status",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'processing')"),
        ),
        Index(None, "provider_job_id"),
        # Retention: completed jobs whose files are still stored, oldest first.
        Index(
            "ix_video_jobs_media_stored",
            "completed_at",
            postgresql_where=text("video_url IS NOT NULL OR thumbnail_url IS NOT NULL"),
        ),
        # Operator statistics over a recent window; BRIN costs next to nothing per insert.
        Index("ix_video_jobs_created_at_brin", "created_at", postgresql_using="brin"),
        # Retention: soft-deleted jobs, oldest deletion first.
        Index(
            "ix_video_jobs_deleted_at",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
    )

    job_id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    model_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"))
    prompt: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    image_url: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    progress: Mapped[int] = mapped_column(server_default=text("0"))
    provider: Mapped[str] = mapped_column(String(32))
    provider_job_id: Mapped[str | None] = mapped_column(Text)
    # Copied from the model at creation: a later catalog edit does not redirect a running job.
    provider_model_id: Mapped[str | None] = mapped_column(Text)
    # What the adapter needs to follow the job (URLs the provider returned, the deployment).
    provider_state: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The model's deadline, counted from submission to the provider (waiting for a provider
    # slot has its own limit, RENDIO_PROVIDER_QUEUE_TIMEOUT).
    deadline_seconds: Mapped[int | None]
    # What the provider says the job cost it, in its own units (for the operator).
    provider_cost: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    video_url: Mapped[str | None] = mapped_column(Text)
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    credits_used: Mapped[int]
    error_code: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    deadline_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    # When retention removed the stored video and thumbnail (the row, the history, stay).
    media_expired_at: Mapped[datetime | None]
