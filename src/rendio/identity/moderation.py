"""What an operator may do to an account: find it, ban or unban it, make it an admin.

A ban takes effect at once: `banned_at` is read by the session check on every request, and
every session of the user is revoked in the same transaction, so no refresh token works either.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.models import User
from rendio.identity.sessions import revoke_sessions
from rendio.platform.errors import NotFound

_SET_BANNED = text(
    "UPDATE users SET banned_at = CASE WHEN :banned THEN COALESCE(banned_at, now()) END, "
    "updated_at = now() WHERE id = :id"
)
_SET_ADMIN = text("UPDATE users SET is_admin = :admin, updated_at = now() WHERE id = :id")

# What an operator is shown of an account (no tokens, no device-check bits).
PROFILE_FIELDS = (
    "id",
    "device_id",
    "apple_sub",
    "email",
    "is_guest",
    "tier",
    "credits_remaining",
    "credits_total",
    "initial_grant_claimed",
    "is_admin",
    "banned_at",
    "merged_into",
    "created_at",
    "updated_at",
)


def profile(user: User) -> dict[str, Any]:
    return {name: getattr(user, name) for name in PROFILE_FIELDS}


async def find_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None = None,
    device_id: str | None = None,
    apple_sub: str | None = None,
) -> User | None:
    """The account with this id, device or Apple subject (exactly one is given)."""
    if user_id is not None:
        condition = User.id == user_id
    elif device_id is not None:
        condition = User.device_id == device_id
    else:
        condition = User.apple_sub == apple_sub
    return (await session.scalars(select(User).where(condition))).one_or_none()


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The account, row-locked until the transaction ends (so `before` and `after` of an admin
    action are the truth), or NotFound."""
    user = (
        await session.scalars(
            select(User)
            .where(User.id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one_or_none()
    if user is None:
        raise NotFound({"user_id": str(user_id)})
    return user


async def set_banned(session: AsyncSession, user_id: uuid.UUID, *, banned: bool) -> None:
    """Ban (and revoke every session) or unban; a second ban keeps the first `banned_at`."""
    await session.execute(_SET_BANNED, {"id": user_id, "banned": banned})
    if banned:
        await revoke_sessions(session, user_id=user_id)


async def set_admin(session: AsyncSession, user_id: uuid.UUID, *, admin: bool) -> None:
    await session.execute(_SET_ADMIN, {"id": user_id, "admin": admin})
