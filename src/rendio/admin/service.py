"""Admin actions: each changes one thing and writes its `admin_actions` row in the caller's
transaction, so the action and its audit row commit together or not at all. The API and the
`rendio admin` CLI call these same functions; only the actor differs.

Money moves only through the ledger (`ledger.service`); accounts, jobs and models through their
own domains' functions.
"""

from __future__ import annotations

import getpass
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.editing import update_model
from rendio.generation.oversight import NotRefundable, refund_by_hand
from rendio.identity import moderation
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform.errors import ValidationFailed


class Action:
    """The names recorded in `admin_actions.action`."""

    REFUND_CREDITS = "refund_credits"
    ADJUST_CREDITS = "adjust_credits"
    REFUND_JOB = "refund_job"
    SET_MODEL = "set_model"
    BAN_USER = "ban_user"
    UNBAN_USER = "unban_user"
    GRANT_ADMIN = "grant_admin"
    REVOKE_ADMIN = "revoke_admin"


@dataclass(frozen=True)
class Actor:
    """Who acts: an admin user through the API, or an operator at the CLI."""

    label: str
    admin_id: uuid.UUID | None = None
    request_id: str | None = None

    @classmethod
    def admin(cls, user_id: uuid.UUID, request_id: str | None) -> Actor:
        return cls(f"admin:{user_id}", user_id, request_id)

    @classmethod
    def cli(cls) -> Actor:
        try:
            login = getpass.getuser()
        except (OSError, KeyError):  # no login name in this environment
            login = "unknown"
        return cls(f"cli:{login}")


@dataclass(frozen=True)
class Done:
    """What an action did: its audit row and the target's state before and after."""

    action_id: int
    before: dict[str, Any]
    after: dict[str, Any]


_AUDIT = text(
    "INSERT INTO admin_actions (admin_id, actor, action, target_user_id, target_model_id, "
    "target_job_id, reason, before, after, request_id, details) VALUES (:admin_id, :actor, "
    ":action, :user_id, :model_id, :job_id, :reason, CAST(:before AS jsonb), "
    "CAST(:after AS jsonb), :request_id, CAST(:details AS jsonb)) RETURNING id"
)


async def _audit(
    session: AsyncSession,
    actor: Actor,
    action: str,
    reason: str,
    before: dict[str, Any],
    after: dict[str, Any],
    *,
    user_id: uuid.UUID | None = None,
    model_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> Done:
    action_id = (
        await session.execute(
            _AUDIT,
            {
                "admin_id": actor.admin_id,
                "actor": actor.label,
                "action": action,
                "user_id": user_id,
                "model_id": model_id,
                "job_id": job_id,
                "reason": reason,
                "before": json.dumps(before, default=str),
                "after": json.dumps(after, default=str),
                "request_id": actor.request_id,
                "details": json.dumps(details or {}, default=str),
            },
        )
    ).scalar_one()
    return Done(int(action_id), before, after)


def _ledger_details(actor: Actor, reason: str) -> dict[str, Any]:
    return {"actor": actor.label, "reason": reason}


async def refund_credits(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, amount: int, reason: str
) -> Done:
    """Give a user `amount` credits back (a goodwill refund, not tied to a job)."""
    user = await moderation.lock_user(session, user_id)
    transaction_id = f"admin:{uuid.uuid4()}"
    balance = await ledger.add(
        session,
        user_id,
        amount,
        reason=Reason.ADMIN_REFUND,
        transaction_id=transaction_id,
        details=_ledger_details(actor, reason),
    )
    return await _audit(
        session,
        actor,
        Action.REFUND_CREDITS,
        reason,
        {"credits_remaining": user.credits_remaining},
        {"credits_remaining": balance},
        user_id=user_id,
        details={"amount": amount, "transaction_id": transaction_id},
    )


async def adjust_credits(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, change: int, reason: str
) -> Done:
    """Add or take credits; a change that would leave the balance below zero is refused with
    ERR_4001 and changes nothing."""
    user = await moderation.lock_user(session, user_id)
    transaction_id = f"admin:{uuid.uuid4()}"
    move = ledger.add if change > 0 else ledger.deduct
    balance = await move(
        session,
        user_id,
        abs(change),
        reason=Reason.ADMIN_ADJUST,
        transaction_id=transaction_id,
        details=_ledger_details(actor, reason),
    )
    return await _audit(
        session,
        actor,
        Action.ADJUST_CREDITS,
        reason,
        {"credits_remaining": user.credits_remaining},
        {"credits_remaining": balance},
        user_id=user_id,
        details={"change": change, "transaction_id": transaction_id},
    )


async def refund_job(session: AsyncSession, actor: Actor, job_id: uuid.UUID, reason: str) -> Done:
    """Refund what a completed job cost, once per job, ever (see `refund_by_hand`)."""
    try:
        refunded = await refund_by_hand(session, job_id, _ledger_details(actor, reason))
    except NotRefundable as refusal:
        raise ValidationFailed({"fields": [{"field": "job_id", "problem": str(refusal)}]}) from None
    return await _audit(
        session,
        actor,
        Action.REFUND_JOB,
        reason,
        {"credits_remaining": refunded.balance_before},
        {"credits_remaining": refunded.balance_after},
        user_id=refunded.user_id,
        job_id=job_id,
        details={"amount": refunded.amount},
    )


async def set_model(
    session: AsyncSession, actor: Actor, model: str, changes: dict[str, Any], reason: str
) -> Done:
    """Switch a model on or off, (un)feature it or set its price (`cost_per_generation`)."""
    before, after = await update_model(session, model, changes)
    return await _audit(
        session, actor, Action.SET_MODEL, reason, before, after, model_id=before["id"]
    )


async def set_banned(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, reason: str, *, banned: bool
) -> Done:
    """Ban (every session revoked at once, on every replica: sessions live in the database)
    or unban. An admin cannot ban themselves."""
    if banned and actor.admin_id == user_id:
        raise ValidationFailed(
            {"fields": [{"field": "user_id", "problem": "an admin cannot ban themselves"}]}
        )
    user = await moderation.lock_user(session, user_id)
    before = {"banned_at": user.banned_at}
    await moderation.set_banned(session, user_id, banned=banned)
    user = await moderation.lock_user(session, user_id)
    action = Action.BAN_USER if banned else Action.UNBAN_USER
    return await _audit(
        session, actor, action, reason, before, {"banned_at": user.banned_at}, user_id=user_id
    )


async def set_admin(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, reason: str, *, admin: bool
) -> Done:
    """Make a user an admin or stop them being one (the CLI's `grant` and `revoke`)."""
    user = await moderation.lock_user(session, user_id)
    before = {"is_admin": user.is_admin}
    await moderation.set_admin(session, user_id, admin=admin)
    action = Action.GRANT_ADMIN if admin else Action.REVOKE_ADMIN
    return await _audit(
        session, actor, action, reason, before, {"is_admin": admin}, user_id=user_id
    )
