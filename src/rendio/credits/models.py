"""App Store purchases: one row per Apple transaction, credited at most once."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base


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
