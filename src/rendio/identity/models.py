"""Tables for people and their sessions: users, auth sessions, refresh tokens, devices."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base, Timestamps


class User(Timestamps, Base):
    """A guest (one per app install) or a registered Sign in with Apple account."""

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("credits_remaining >= 0", name="credits_remaining_non_negative"),
        CheckConstraint("credits_total >= 0", name="credits_total_non_negative"),
        CheckConstraint("language IN ('en', 'tr', 'es')", name="language_supported"),
        CheckConstraint(
            "theme_preference IN ('system', 'light', 'dark')", name="theme_preference_known"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    device_id: Mapped[str | None] = mapped_column(Text, unique=True)
    apple_sub: Mapped[str | None] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    is_guest: Mapped[bool] = mapped_column(server_default=text("true"))
    tier: Mapped[str] = mapped_column(String(32), server_default="free")
    credits_remaining: Mapped[int] = mapped_column(server_default=text("0"))
    credits_total: Mapped[int] = mapped_column(server_default=text("0"))
    initial_grant_claimed: Mapped[bool] = mapped_column(server_default=text("false"))
    language: Mapped[str] = mapped_column(String(8), server_default="en")
    theme_preference: Mapped[str] = mapped_column(String(16), server_default="system")
    is_admin: Mapped[bool] = mapped_column(server_default=text("false"))
    banned_at: Mapped[datetime | None]
    merged_into: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # What the app keeps about its user through supabase `updateUser({data})` (GoTrue's
    # `user_metadata`): a JSON object, size-bounded by `identity.metadata`.
    user_metadata: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class AuthSession(Base):
    """A login: the refresh-token family hangs off it, and revoking it ends them all."""

    __tablename__ = "auth_sessions"
    __table_args__ = (Index(None, "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amr: Mapped[str] = mapped_column(String(32), server_default="anonymous")
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    refreshed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class RefreshToken(Base):
    """One opaque refresh token, stored as its SHA-256; `parent_id` links the rotation chain."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index(None, "session_id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE")
    )
    parent_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("refresh_tokens.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class DeviceBits(Base):
    """DeviceCheck's two bits per physical device, kept here by the dev-only `trust` verifier.

    `device_key` is a SHA-256 of the device token, never the token itself.
    """

    __tablename__ = "device_bits"

    device_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    bit0: Mapped[bool] = mapped_column(server_default=text("false"))
    bit1: Mapped[bool] = mapped_column(server_default=text("false"))
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"))
