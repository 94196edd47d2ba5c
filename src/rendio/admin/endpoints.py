"""The admin API (seed 003 phase 9): for users with `is_admin`, everyone else gets 403 ERR_4010.

Every action commits with its audit row (the request's one transaction); the audit row names the
admin and the request id.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from rendio.admin import reports, service
from rendio.admin.schemas import (
    ActionOut,
    ActionsPage,
    ActionsQuery,
    AdjustCreditsIn,
    AuditRow,
    BanIn,
    RefundCreditsIn,
    RefundJobIn,
    SetModelIn,
    StatsQuery,
    UnbanIn,
    UserQuery,
)
from rendio.catalog.services import CatalogDeps
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.platform.db import Session, after_commit
from rendio.platform.errors import ErrorCode, Forbidden
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["admin"])
DEFAULT_WINDOW = timedelta(hours=24)
# Every admin operation: not an admin (ERR_4010, in AUTH_ERRORS) or a bad request; those that
# name a user, job or model: not found.
_READ = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED)
_ACTION = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)


async def require_admin(request: Request, caller: CurrentUser) -> service.Actor:
    if not caller.user.is_admin:
        raise Forbidden({"reason": "admin only"})
    return service.Actor.admin(caller.user_id, request.scope.get("state", {}).get("request_id"))


Admin = Annotated[service.Actor, Depends(require_admin)]


def _out(done: service.Done) -> ActionOut:
    return ActionOut(action_id=done.action_id, before=done.before, after=done.after)


@router.post("/admin-refund-credits", response_model=ActionOut, responses=_ACTION)
async def admin_refund_credits(admin: Admin, session: Session, body: RefundCreditsIn) -> ActionOut:
    """Give a user credits back, through the ledger (reason `admin_refund`)."""
    return _out(
        await service.refund_credits(session, admin, body.user_id, body.amount, body.reason)
    )


@router.post(
    "/admin-adjust-credits",
    response_model=ActionOut,
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.VALIDATION_FAILED,
        ErrorCode.NOT_FOUND,
        ErrorCode.INSUFFICIENT_CREDITS,
    ),
)
async def admin_adjust_credits(admin: Admin, session: Session, body: AdjustCreditsIn) -> ActionOut:
    """Add (positive) or take (negative) credits; never below zero (402 ERR_4001)."""
    return _out(
        await service.adjust_credits(session, admin, body.user_id, body.change, body.reason)
    )


@router.post("/admin-refund-job", response_model=ActionOut, responses=_ACTION)
async def admin_refund_job(admin: Admin, session: Session, body: RefundJobIn) -> ActionOut:
    """Refund what a completed job cost: once per job, ever (a failed job was refunded
    already; a running one is refunded by itself if it fails)."""
    return _out(await service.refund_job(session, admin, body.job_id, body.reason))


@router.post("/admin-set-model", response_model=ActionOut, responses=_ACTION)
async def admin_set_model(
    admin: Admin, session: Session, catalog: CatalogDeps, body: SetModelIn
) -> ActionOut:
    """Switch a model on or off, feature it, or set its price in credits."""
    done = await service.set_model(session, admin, body.model_id, body.changes(), body.reason)
    # Every replica hears the change's notice; this one also forgets at once, so the admin's
    # next get-models already shows it.
    after_commit(session, catalog.catalog_cache.changed)
    return _out(done)


@router.post("/admin-ban-user", response_model=ActionOut, responses=_ACTION)
async def admin_ban_user(admin: Admin, session: Session, body: BanIn) -> ActionOut:
    """Ban a user: their every session is revoked at once."""
    return _out(await service.set_banned(session, admin, body.user_id, body.reason, banned=True))


@router.post("/admin-unban-user", response_model=ActionOut, responses=_ACTION)
async def admin_unban_user(admin: Admin, session: Session, body: UnbanIn) -> ActionOut:
    """Lift a ban (the user signs in again: their old sessions stay revoked)."""
    return _out(await service.set_banned(session, admin, body.user_id, body.reason, banned=False))


@router.get("/admin-user", responses=_ACTION)
async def admin_user(
    _: Admin, session: Session, query: Annotated[UserQuery, Query()]
) -> dict[str, object]:
    """One account by id, device id or Apple subject: profile, balance, latest ledger rows,
    jobs (with the provider's raw failure text) and admin actions on it."""
    return await reports.user_report(
        session, user_id=query.user_id, device_id=query.device_id, apple_sub=query.apple_sub
    )


@router.get("/admin-stats", responses=_READ)
async def admin_stats(
    _: Admin, session: Session, query: Annotated[StatsQuery, Query()]
) -> dict[str, object]:
    """The key metrics since `since` (default: the last 24 hours)."""
    until = datetime.now(UTC)
    since = query.since or until - DEFAULT_WINDOW
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return await reports.stats(session, since, until)


@router.get("/admin-actions", response_model=ActionsPage, responses=_READ)
async def admin_actions(
    _: Admin, session: Session, query: Annotated[ActionsQuery, Query()]
) -> ActionsPage:
    """The audit log, newest first; pass `next_cursor` back as `cursor` for the next page."""
    rows, next_id = await reports.actions_page(
        session,
        before_id=int(query.cursor) if query.cursor else None,
        limit=query.limit,
        user_id=query.user_id,
        action=query.action,
    )
    return ActionsPage(
        data=[AuditRow.model_validate(row) for row in rows],
        next_cursor=str(next_id) if next_id is not None else None,
        has_more=next_id is not None,
    )
