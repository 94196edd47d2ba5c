"""A user's history: keyset pages of their jobs, soft delete and restore.

Pages are keyed on `(created_at, job_id)`, newest first: each page starts strictly after the
last row of the previous one, so its cost does not grow with how far the user has scrolled,
and rows inserted or deleted between pages neither repeat nor push others out of sight.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation import jobs
from rendio.generation.links import MediaLinks
from rendio.generation.schemas import job_error
from rendio.history import cursor
from rendio.history.schemas import HistoryItem, HistoryPage, HistoryQuery
from rendio.platform.errors import NotFound


async def page(
    session: AsyncSession,
    user_id: uuid.UUID,
    query: HistoryQuery,
    *,
    secret: str,
    links: MediaLinks,
    accept_language: str | None,
) -> HistoryPage:
    after = cursor.decode(secret, user_id, query.listing, query.cursor) if query.cursor else None
    rows = await jobs.page(
        session,
        user_id,
        deleted=query.deleted,
        status=query.status,
        after=after,
        limit=query.limit + 1,  # one more says whether there is a next page
    )
    shown, has_more = rows[: query.limit], len(rows) > query.limit
    items = [
        HistoryItem(
            job_id=row.job_id,
            status=row.status,
            progress=row.progress,
            prompt=row.prompt,
            model_id=row.model_id,
            model_name=row.model_name,
            thumbnail_url=links(row.thumbnail_url),
            video_url=links(row.video_url),
            credits_used=row.credits_used,
            error=job_error(row.error_code, accept_language),
            created_at=row.created_at,
            completed_at=row.completed_at,
            deleted_at=row.deleted_at,
            media_expired=row.media_expired_at is not None,
        )
        for row in shown
    ]
    next_cursor = None
    if has_more:
        last = shown[-1]
        next_cursor = cursor.encode(secret, user_id, query.listing, last.created_at, last.job_id)
    return HistoryPage(data=items, next_cursor=next_cursor, has_more=has_more)


async def set_deleted(
    session: AsyncSession, user_id: uuid.UUID, job_id: uuid.UUID, *, deleted: bool
) -> None:
    """Soft-delete or restore; another user's (or no) job is 404, as if it did not exist.

    Deleting an unfinished job hides it and nothing more: it still runs, its credits stay
    spent, and if it fails it is refunded as always (docs/decisions.md says why).
    """
    if not await jobs.set_deleted(session, job_id, user_id, deleted=deleted):
        raise NotFound({"job_id": str(job_id)})
