"""Tables of push: the APNs tokens users register, and one delivery row per push sent."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base, Timestamps


class PushToken(Timestamps, Base):
    """An APNs device token registered by a user's app."""

    __tablename__ = "push_tokens"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token: Mapped[str] = mapped_column(Text, unique=True)
    environment: Mapped[str] = mapped_column(String(16), server_default="production")
    disabled_at: Mapped[datetime | None]


class PushDelivery(Timestamps, Base):
    """One push of one job's ending to one token: what happened, after how many attempts."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        UniqueConstraint("job_id", "token_id"),
        CheckConstraint("status IN ('pending', 'sent', 'failed', 'dropped')", name="status_known"),
        Index(None, "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("video_jobs.job_id", ondelete="SET NULL")
    )
    token_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("push_tokens.id", ondelete="SET NULL")
    )
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    apns_id: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
