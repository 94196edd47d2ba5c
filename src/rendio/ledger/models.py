"""The credit ledger: one row per balance movement, written in the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base


class LedgerEntry(Base):
    """A ledger row. `transaction_id` is unique: it is the second lock against double
    grants and refunds. `user_id` becomes NULL when the account is deleted (anonymised)."""

    __tablename__ = "quota_log"
    __table_args__ = (
        CheckConstraint("change <> 0", name="change_non_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index(None, "user_id", "id"),
        Index(None, "job_id"),
        # Operator statistics over a recent window; BRIN costs next to nothing per insert.
        Index("ix_quota_log_created_at_brin", "created_at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("video_jobs.job_id", ondelete="SET NULL")
    )
    change: Mapped[int]
    reason: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[str] = mapped_column(Text, unique=True)
    balance_after: Mapped[int]
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
