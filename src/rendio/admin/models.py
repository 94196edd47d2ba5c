"""The audit trail: every admin action, written in the same transaction as the action."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base


class AdminAction(Base):
    """One admin action: who (`actor`: `admin:<user id>` or `cli:<login>`), on what, why, and
    the target's state before and after. Kept when the admin or the target is deleted."""

    __tablename__ = "admin_actions"
    __table_args__ = (Index(None, "target_user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    admin_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(Text, server_default="")
    action: Mapped[str] = mapped_column(String(64))
    target_user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    target_model_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("models.id", ondelete="SET NULL")
    )
    target_job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("video_jobs.job_id", ondelete="SET NULL")
    )
    reason: Mapped[str] = mapped_column(Text, server_default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
