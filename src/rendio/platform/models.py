"""Operational tables shared by every domain: idempotency keys, inbound webhook deliveries and
the error log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base


class WebhookDelivery(Base):
    """One inbound callback; (source, delivery_id) unique so a redelivery is handled once."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source", "delivery_id"), Index(None, "received_at"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    status: Mapped[str] = mapped_column(String(16), server_default="received")
    error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    processed_at: Mapped[datetime | None]


class ErrorLog(Base):
    """Server and provider errors worth an operator's look, with the request that hit them."""

    __tablename__ = "error_log"
    __table_args__ = (Index(None, "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("video_jobs.job_id", ondelete="SET NULL")
    )
    provider: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))


class OpsCount(Base):
    """Per-minute counts of what the API answered (error codes, rate-limit refusals by
    policy), added to by every replica; `admin-stats` sums them."""

    __tablename__ = "ops_counts"

    minute: Mapped[datetime] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    label: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """A used Idempotency-Key (Brandur Leach's design): unique per user, holding the stored
    answer until `expires_at`. While the first request runs, an advisory lock (not a column)
    marks the key as in flight; see `idempotency.py`."""

    __tablename__ = "idempotency_log"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        Index(None, "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    operation: Mapped[str] = mapped_column(String(64))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("video_jobs.job_id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    expires_at: Mapped[datetime] = mapped_column(server_default=text("now() + interval '24 hours'"))
