"""The credit ledger: one row per balance movement, written in the same transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base


class QuotaLog(Base):
    """A ledger row. `transaction_id` is unique: it is the second lock against double
    grants and refunds. `user_id` becomes NULL when the account is deleted (anonymised)."""

    __tablename__ = "quota_log"
    __table_args__ = (
        CheckConstraint("change <> 0", name="change_non_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index(None, "user_id", "id"),
        Index(None, "job_id"),
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


class Purchase(Base):
    """One App Store transaction, credited at most once (`transaction_id` is the key).

    `status` is `credited` or `refunded`; `credits_revoked` is what a refund actually took back
    and `refund_shortfall` what it could not (already spent), so a reversal gives back exactly
    what was taken.
    """

    __tablename__ = "purchases"
    __table_args__ = (
        CheckConstraint("status IN ('credited', 'refunded')", name="status_known"),
        CheckConstraint("credits > 0", name="credits_positive"),
        Index(None, "user_id"),
    )

    transaction_id: Mapped[str] = mapped_column(Text, primary_key=True)
    original_transaction_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    product_id: Mapped[str] = mapped_column(Text)
    credits: Mapped[int]
    environment: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="credited")
    credits_revoked: Mapped[int] = mapped_column(server_default=text("0"))
    refund_shortfall: Mapped[int] = mapped_column(server_default=text("0"))
    purchased_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
