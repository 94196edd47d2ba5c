"""Admins and jobs for the admin tests."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.clients import Guest, guest
from tests.helpers.factories import LOCAL_ID


async def admin_guest(client: httpx.AsyncClient, db: AsyncSession, device: str) -> Guest:
    user = await guest(client, device)
    await db.execute(text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": user.user_id})
    await db.commit()
    return user


async def scalar(db: AsyncSession, sql: str, **params: Any) -> Any:
    value = (await db.execute(text(sql), params)).scalar()
    await db.commit()
    return value


async def add_job(db: AsyncSession, user: Guest, status: str, cost: int = 3) -> str:
    """A job straight into the table (charged through nothing: these tests refund it by hand)."""
    job_id = await scalar(
        db,
        "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, credits_used, "
        "deadline_at, status, completed_at) VALUES (:u, :m, 'a cat', '{}'::jsonb, 'local', :c, "
        "now() + interval '1 hour', CAST(:s AS varchar), "
        "CASE WHEN CAST(:s AS varchar) IN ('completed', 'failed') THEN now() END) "
        "RETURNING job_id",
        u=user.user_id,
        m=LOCAL_ID,
        c=cost,
        s=status,
    )
    return str(job_id)
