"""Sessions and rotating refresh tokens, the way Supabase Auth's clients expect them.

A session is one login; its refresh tokens form a chain. Only SHA-256 hashes of refresh tokens
are stored. A child token is derived from its parent (HMAC with the server secret), which lets
a parent presented again within the reuse interval be answered with the chain's *current*
token, as GoTrue does, without keeping any token in a readable form. A rotated token presented
after the interval is treated as stolen: the whole session is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.gotrue import AuthApiError
from rendio.identity.models import AuthSession, RefreshToken, User
from rendio.identity.tokens import mint_access_token

ISSUER = "rendio/auth/v1"
_MAX_CHAIN_WALK = 32


@dataclass(frozen=True)
class Keys:
    """What minting needs: the signing secret and the lifetimes from settings."""

    secret: str
    access_token_lifetime: int
    refresh_reuse_interval: int


@dataclass(frozen=True)
class IssuedSession:
    user: User
    session_id: uuid.UUID
    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: int


class RefreshTokenReused(Exception):
    """A rotated refresh token came back after the reuse interval; its session is revoked.

    The revocation has been written in the caller's transaction, which must be committed
    even though the request fails.
    """


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _child_token(secret: str, parent: str) -> str:
    digest = hmac.new(secret.encode(), b"refresh-token:" + parent.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _access_token(keys: Keys, user: User, session_id: uuid.UUID, amr: str) -> tuple[str, int]:
    return mint_access_token(
        keys.secret,
        issuer=ISSUER,
        user_id=user.id,
        session_id=session_id,
        is_anonymous=user.is_guest,
        email=user.email,
        amr=amr,
        lifetime_seconds=keys.access_token_lifetime,
    )


def _issued(keys: Keys, user: User, session_id: uuid.UUID, amr: str, refresh: str) -> IssuedSession:
    access, expires_at = _access_token(keys, user, session_id, amr)
    return IssuedSession(
        user=user,
        session_id=session_id,
        access_token=access,
        refresh_token=refresh,
        expires_in=keys.access_token_lifetime,
        expires_at=expires_at,
    )


# Both rows of a new login in one statement (one round trip, no ORM flush: every new device
# pays for it, bench/README.md).
_START_SESSION = text(
    "WITH opened AS (INSERT INTO auth_sessions (id, user_id, amr) VALUES (:id, :user_id, :amr) "
    "RETURNING id) INSERT INTO refresh_tokens (token_hash, session_id) SELECT :hash, id FROM opened"
)


async def start_session(session: AsyncSession, keys: Keys, user: User, amr: str) -> IssuedSession:
    """A new login for `user`: a session row, its first refresh token, an access token."""
    session_id = uuid.uuid4()
    refresh = secrets.token_urlsafe(32)
    await session.execute(
        _START_SESSION,
        {"id": session_id, "user_id": user.id, "amr": amr, "hash": hash_token(refresh)},
    )
    return _issued(keys, user, session_id, amr, refresh)


_REFRESH_LOOKUP = text(
    """
    SELECT rt.id, rt.session_id, rt.rotated_at, rt.revoked_at,
           s.revoked_at AS session_revoked_at, s.amr, s.user_id, now() AS now
    FROM refresh_tokens rt JOIN auth_sessions s ON s.id = rt.session_id
    WHERE rt.token_hash = :hash
    FOR UPDATE OF rt
    """
)


async def refresh_session(session: AsyncSession, keys: Keys, token: str) -> IssuedSession:
    """Exchange a refresh token for a new session state (rotating it), or refuse.

    The row lock on the presented token serializes concurrent refreshes of one token: the
    first rotates it, the second finds it just rotated and gets the chain's current token.
    """
    row = (await session.execute(_REFRESH_LOOKUP, {"hash": hash_token(token)})).one_or_none()
    if row is None:
        raise AuthApiError(400, "refresh_token_not_found", "Invalid Refresh Token: Not Found")
    if row.session_revoked_at is not None or row.revoked_at is not None:
        raise AuthApiError(400, "session_not_found", "Invalid Refresh Token: Session Revoked")
    user = await session.get(User, row.user_id)
    if user is None or user.banned_at is not None:
        raise AuthApiError(400, "user_banned", "User is banned")

    if row.rotated_at is None:
        child = _child_token(keys.secret, token)
        await session.execute(
            update(RefreshToken).where(RefreshToken.id == row.id).values(rotated_at=row.now)
        )
        session.add(
            RefreshToken(token_hash=hash_token(child), session_id=row.session_id, parent_id=row.id)
        )
        await session.execute(
            update(AuthSession).where(AuthSession.id == row.session_id).values(refreshed_at=row.now)
        )
        await session.flush()
        return _issued(keys, user, row.session_id, row.amr, child)

    reuse_window = timedelta(seconds=keys.refresh_reuse_interval)
    if keys.refresh_reuse_interval > 0 and row.now - row.rotated_at <= reuse_window:
        current = await _current_descendant(session, keys.secret, token)
        if current is not None:
            return _issued(keys, user, row.session_id, row.amr, current)

    await revoke_sessions(session, session_ids=[row.session_id])
    raise RefreshTokenReused(str(row.session_id))


async def _current_descendant(session: AsyncSession, secret: str, token: str) -> str | None:
    """Walk the derived chain from `token` to the token not yet rotated, if it is still live."""
    candidate = token
    for _ in range(_MAX_CHAIN_WALK):
        candidate = _child_token(secret, candidate)
        found = (
            await session.execute(
                select(RefreshToken.rotated_at, RefreshToken.revoked_at).where(
                    RefreshToken.token_hash == hash_token(candidate)
                )
            )
        ).one_or_none()
        if found is None or found.revoked_at is not None:
            return None
        if found.rotated_at is None:
            return candidate
    return None


async def revoke_sessions(
    session: AsyncSession,
    *,
    session_ids: list[uuid.UUID] | None = None,
    user_id: uuid.UUID | None = None,
    keep: uuid.UUID | None = None,
) -> None:
    """Revoke the given sessions, or every session of `user_id` (except `keep`)."""
    now = datetime.now(UTC)
    statement = update(AuthSession).where(AuthSession.revoked_at.is_(None))
    if session_ids is not None:
        statement = statement.where(AuthSession.id.in_(session_ids))
    if user_id is not None:
        statement = statement.where(AuthSession.user_id == user_id)
    if keep is not None:
        statement = statement.where(AuthSession.id != keep)
    revoked = (
        (await session.execute(statement.values(revoked_at=now).returning(AuthSession.id)))
        .scalars()
        .all()
    )
    if revoked:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.session_id.in_(revoked), RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
