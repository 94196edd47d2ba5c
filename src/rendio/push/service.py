"""Push tokens and deliveries: which devices hear of a user's finished jobs, and what became of
each push."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.platform.queue import defer_in_transaction

SEND_TASK = "push:send"

# A token belongs to the account last signed in on its device.
_REGISTER = text(
    "INSERT INTO push_tokens (user_id, token, environment) VALUES (:user_id, :token, :env) "
    "ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, "
    "environment = EXCLUDED.environment, disabled_at = NULL, updated_at = now()"
)
_UNREGISTER = text(
    "DELETE FROM push_tokens WHERE token = :token AND user_id = :user_id RETURNING id"
)
_REASSIGN = text("UPDATE push_tokens SET user_id = :to_user WHERE user_id = :from_user")
# One delivery per (job, token): running the event's handler again plans nothing new.
_PLAN = text(
    "INSERT INTO push_deliveries (job_id, token_id) "
    "SELECT :job_id, id FROM push_tokens WHERE user_id = :user_id AND disabled_at IS NULL "
    "ON CONFLICT (job_id, token_id) DO NOTHING RETURNING id"
)
_LOAD = text(
    "SELECT d.id, d.status, d.attempts, d.job_id, t.id AS token_id, t.token, t.environment "
    "FROM push_deliveries d LEFT JOIN push_tokens t ON t.id = d.token_id WHERE d.id = :id "
    "FOR UPDATE OF d"
)
_RECORD = text(
    "UPDATE push_deliveries SET status = CAST(:status AS varchar), attempts = attempts + :tried, "
    "apns_id = COALESCE(CAST(:apns_id AS text), apns_id), reason = :reason, updated_at = now(), "
    "sent_at = CASE WHEN CAST(:status AS varchar) = 'sent' THEN now() ELSE sent_at END "
    "WHERE id = :id"
)
_FORGET_TOKEN = text("DELETE FROM push_tokens WHERE id = :id")


@dataclass(frozen=True)
class Delivery:
    id: int
    status: str
    attempts: int
    job_id: uuid.UUID | None
    token_id: int | None
    token: str | None
    environment: str | None


async def register(session: AsyncSession, user_id: uuid.UUID, token: str, environment: str) -> None:
    await session.execute(_REGISTER, {"user_id": user_id, "token": token, "env": environment})


async def unregister(session: AsyncSession, user_id: uuid.UUID, token: str) -> bool:
    return (
        await session.execute(_UNREGISTER, {"token": token, "user_id": user_id})
    ).first() is not None


async def reassign_owner(session: AsyncSession, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    """A merged guest's devices now belong to the account."""
    await session.execute(_REASSIGN, {"from_user": from_user, "to_user": to_user})


async def plan(session: AsyncSession, job_id: uuid.UUID, user_id: uuid.UUID) -> int:
    """A delivery row and a send task for each of the user's tokens, in the caller's
    transaction; returns how many were planned."""
    planned = list((await session.execute(_PLAN, {"job_id": job_id, "user_id": user_id})).scalars())
    for delivery_id in planned:
        await defer_in_transaction(session, SEND_TASK, {"delivery_id": delivery_id})
    return len(planned)


async def load(session: AsyncSession, delivery_id: int) -> Delivery | None:
    row = (await session.execute(_LOAD, {"id": delivery_id})).one_or_none()
    if row is None:
        return None
    return Delivery(
        row.id, row.status, row.attempts, row.job_id, row.token_id, row.token, row.environment
    )


async def record(
    session: AsyncSession,
    delivery_id: int,
    status: str,
    *,
    tried: bool,
    apns_id: str | None = None,
    reason: str | None = None,
) -> None:
    await session.execute(
        _RECORD,
        {
            "id": delivery_id,
            "status": status,
            "tried": 1 if tried else 0,
            "apns_id": apns_id,
            "reason": reason,
        },
    )


async def forget_token(session: AsyncSession, token_id: int) -> None:
    await session.execute(_FORGET_TOKEN, {"id": token_id})
