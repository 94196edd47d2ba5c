"""Retention: stored files go after their window (the job says so), soft-deleted jobs go after
theirs, old webhook deliveries and errors go — in batches, once each even when two passes run
at once, never touching the ledger."""

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.history.retention import expire_media_once, purge_deleted_once
from rendio.platform.retention import purge_old_rows
from rendio.tasks import LOG_TABLES
from tests.helpers.clients import app_of, guest
from tests.helpers.factories import generate, wait_for_end


class CountingStorage:
    """The app's storage, recording every key it is asked to delete."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.deleted: list[str] = []

    async def put_file(self, key: str, source: Path) -> None:
        await self.inner.put_file(key, source)

    async def delete(self, keys: list[str]) -> None:
        self.deleted += keys
        await asyncio.sleep(0.05)  # let a concurrent pass run meanwhile
        await self.inner.delete(keys)

    def local_path(self, key: str) -> Path | None:
        path: Path | None = self.inner.local_path(key)
        return path

    def link(self, key: str, base_url: str, lifetime_seconds: int) -> str:
        return str(self.inner.link(key, base_url, lifetime_seconds))


async def ledger_rows(db: AsyncSession) -> int:
    return (await db.execute(text("SELECT count(*) FROM quota_log"))).scalar_one()


async def test_media_expire_once_even_with_two_passes_at_once(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = worker_client
    user = await guest(client)
    job_ids = [(await generate(client, user.headers)).json()["job_id"] for _ in range(3)]
    for job_id in job_ids:
        assert (await wait_for_end(client, user.headers, job_id))["status"] == "completed"
    services = app_of(client).state.services
    keys = (await db.execute(text("SELECT video_url, thumbnail_url FROM video_jobs"))).all()
    files = [services.storage.local_path(key) for row in keys for key in row]
    assert all(path is not None for path in files)
    await db.execute(
        text("UPDATE video_jobs SET completed_at = now() - interval '8 days' WHERE job_id = :j"),
        [{"j": job_ids[0]}, {"j": job_ids[1]}],
    )
    await db.commit()
    ledger_before = await ledger_rows(db)

    counting = CountingStorage(services.storage)
    small_batches = dataclasses.replace(
        services,
        storage=counting,
        settings=services.settings.model_copy(update={"retention_batch": 1}),
    )
    done = await asyncio.gather(expire_media_once(small_batches), expire_media_once(small_batches))
    assert sum(done) == 2
    assert len(counting.deleted) == len(set(counting.deleted)) == 4  # each file once
    assert await expire_media_once(small_batches) == 0  # nothing left: a rerun is harmless

    for job_id, expired in zip(job_ids, (True, True, False), strict=True):
        status = (
            await client.get(
                "/functions/v1/get-video-status", params={"job_id": job_id}, headers=user.headers
            )
        ).json()
        assert status["media_expired"] is expired
        assert (status["video_url"] is None) is expired
        assert (status["thumbnail_url"] is None) is expired
    page = (await client.get("/functions/v1/get-video-jobs", headers=user.headers)).json()
    assert {item["job_id"]: item["media_expired"] for item in page["data"]} == {
        job_ids[0]: True,
        job_ids[1]: True,
        job_ids[2]: False,
    }
    assert sum(1 for path in files if path is not None and path.exists()) == 2
    assert await ledger_rows(db) == ledger_before


async def test_soft_deleted_jobs_are_purged_after_their_window_and_the_ledger_stays(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client)
    kept = (await generate(client, user.headers)).json()["job_id"]
    gone = (await generate(client, user.headers)).json()["job_id"]
    recent = (await generate(client, user.headers)).json()["job_id"]
    for job_id in (gone, recent):
        await client.post(
            "/functions/v1/delete-video-job", json={"job_id": job_id}, headers=user.headers
        )
    await db.execute(
        text("UPDATE video_jobs SET deleted_at = now() - interval '8 days' WHERE job_id = :j"),
        {"j": gone},
    )
    await db.commit()
    ledger_before = await ledger_rows(db)
    services = app_of(client).state.services
    purged = await asyncio.gather(purge_deleted_once(services), purge_deleted_once(services))
    assert sum(purged) == 1
    remaining = await db.execute(text("SELECT job_id::text FROM video_jobs ORDER BY job_id"))
    assert set(remaining.scalars()) == {kept, recent}
    assert await ledger_rows(db) == ledger_before
    orphaned = await db.execute(
        text("SELECT count(*) FROM quota_log WHERE reason = 'generation' AND job_id IS NULL")
    )
    assert orphaned.scalar_one() == 1  # the purged job's charge, kept without its job


async def test_old_webhook_deliveries_and_errors_go(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    for age in ("40 days", "1 day"):
        await db.execute(
            text(
                "INSERT INTO webhook_deliveries (source, delivery_id, payload, received_at) "
                f"VALUES ('test', :id, '{{}}', now() - interval '{age}')"
            ),
            [{"id": f"{age}-{n}"} for n in range(3)],
        )
        await db.execute(
            text(
                "INSERT INTO error_log (source, code, message, created_at) "
                f"VALUES ('test', 'ERR_6003', 'boom', now() - interval '{age}')"
            ),
            [{}] * 3,
        )
    await db.commit()
    queue = app_of(client).state.queue
    first, second = await asyncio.gather(
        purge_old_rows(queue, LOG_TABLES, age_seconds=30 * 86_400, batch=2, max_batches=10),
        purge_old_rows(queue, LOG_TABLES, age_seconds=30 * 86_400, batch=2, max_batches=10),
    )
    assert first["webhook_deliveries"] + second["webhook_deliveries"] == 3
    assert first["error_log"] + second["error_log"] == 3
    for table in ("webhook_deliveries", "error_log"):
        left = await db.execute(text(f"SELECT count(*) FROM {table}"))
        assert left.scalar_one() == 3, table
