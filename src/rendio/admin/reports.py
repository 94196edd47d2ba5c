"""What the admin tools read: one account in full, the key metrics of a time window (seed 003
"Key Metrics to Track"), and the audit log a page at a time."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.credits import purchases
from rendio.generation.oversight import recent_of_user, stats_since
from rendio.identity import moderation
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform import opslog
from rendio.platform.errors import NotFound

RECENT = 20
TOP_ERRORS = 10

_ACTIONS = text(
    "SELECT id, admin_id, actor, action, target_user_id, target_model_id, target_job_id, "
    "reason, before, after, request_id, details, created_at FROM admin_actions "
    "WHERE (CAST(:before_id AS bigint) IS NULL OR id < :before_id) "
    "AND (CAST(:user_id AS uuid) IS NULL OR target_user_id = :user_id) "
    "AND (CAST(:action AS text) IS NULL OR action = :action) "
    "ORDER BY id DESC LIMIT :limit"
)
_ACTIONS_ON_USER = text(
    "SELECT id, actor, action, reason, before, after, created_at FROM admin_actions "
    "WHERE target_user_id = :user_id ORDER BY id DESC LIMIT :limit"
)


def _rows(rows: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in rows]


async def user_report(
    session: AsyncSession,
    *,
    user_id: uuid.UUID | None = None,
    device_id: str | None = None,
    apple_sub: str | None = None,
) -> dict[str, Any]:
    """The account's profile and balance, its latest ledger rows, jobs and admin actions."""
    user = await moderation.find_user(
        session, user_id=user_id, device_id=device_id, apple_sub=apple_sub
    )
    if user is None:
        raise NotFound({"user": "no such account"})
    actions = await session.execute(_ACTIONS_ON_USER, {"user_id": user.id, "limit": RECENT})
    return {
        "user": moderation.profile(user),
        "ledger": _rows(await ledger.recent(session, user.id, RECENT)),
        "jobs": _rows(await recent_of_user(session, user.id, RECENT)),
        "actions": _rows(actions),
    }


async def actions_page(
    session: AsyncSession,
    *,
    before_id: int | None,
    limit: int,
    user_id: uuid.UUID | None = None,
    action: str | None = None,
) -> tuple[list[dict[str, Any]], int | None]:
    """Audit rows newest first, strictly older than `before_id`; and the next page's cursor."""
    rows = _rows(
        await session.execute(
            _ACTIONS,
            {"before_id": before_id, "user_id": user_id, "action": action, "limit": limit + 1},
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more else None)


# Ledger reasons in the headline figures (the rest are in `credits.by_reason`).
_GRANTED = (Reason.INITIAL_GRANT,)
_BOUGHT = (Reason.PURCHASE, Reason.PURCHASE_RESTORED)
_REFUNDED = (Reason.REFUND, Reason.ADMIN_REFUND)


def _sum(by_reason: dict[str, int], reasons: tuple[Reason, ...]) -> int:
    return sum(by_reason.get(reason.value, 0) for reason in reasons)


async def stats(session: AsyncSession, since: datetime, until: datetime) -> dict[str, Any]:
    """The key metrics since `since`: generations, credits, purchases, refusals and errors."""
    generations = await stats_since(session, since)
    by_reason = await ledger.totals_since(session, since)
    counts = await opslog.counts_since(session, since)
    errors = sorted(counts[opslog.ERROR].items(), key=lambda item: (-item[1], item[0]))
    return {
        "since": since,
        "until": until,
        "generations": {
            "by_status": generations.by_status(),
            "by_provider": generations.by_provider,
            "success_rate": generations.success_rate(),
            "average_seconds": generations.average_seconds,
            "p95_seconds": generations.p95_seconds,
        },
        "provider_errors": generations.failures,
        "credits": {
            "granted": _sum(by_reason, _GRANTED),
            "bought": _sum(by_reason, _BOUGHT),
            "spent": -by_reason.get(Reason.GENERATION.value, 0),
            "refunded": _sum(by_reason, _REFUNDED),
            "by_reason": by_reason,
        },
        "purchases": await purchases.stats_since(session, since),
        "rate_limit_hits": {
            "total": sum(counts[opslog.RATE_LIMIT].values()),
            "by_policy": counts[opslog.RATE_LIMIT],
        },
        "top_error_codes": [{"code": code, "count": count} for code, count in errors[:TOP_ERRORS]],
    }
