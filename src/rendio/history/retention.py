"""Retention of what users made (SPEC §5, seed 000's policy): stored videos and thumbnails go
after `RENDIO_MEDIA_RETENTION_DAYS` — the job keeps its row and says `media_expired` — and
soft-deleted jobs go after `RENDIO_DELETED_JOB_RETENTION_DAYS`. Ledger rows are never touched.

Both run as periodic tasks in bounded batches. Each batch claims its rows with
`FOR UPDATE SKIP LOCKED`, so passes on several workers share the work, and a pass that dies
leaves its rows to the next one: running twice, or side by side, removes each item once.
"""

from __future__ import annotations

import procrastinate
import structlog

from rendio.generation import jobs
from rendio.generation.services import GenerationServices
from rendio.platform.services import services_of

log = structlog.get_logger("rendio.history")
_DAY = 86_400.0


async def expire_media(context: procrastinate.JobContext, timestamp: int) -> int:
    return await expire_media_once(services_of(context.additional_context, GenerationServices))


async def expire_media_once(services: GenerationServices) -> int:
    """Remove stored files of jobs completed longer ago than the window; return how many jobs."""
    settings = services.settings
    age = settings.media_retention_days * _DAY
    expired = 0
    for _ in range(settings.retention_max_batches):
        async with services.sessions() as session:
            job_ids, keys = await jobs.expire_media(session, age, settings.retention_batch)
            if not job_ids:
                break
            # Files first, under the rows' locks: a pass that dies here leaves rows pointing at
            # missing files, which the next pass marks (deleting a missing key is harmless).
            await services.storage.delete(keys)
            await jobs.mark_media_expired(session, job_ids)
            await session.commit()
        expired += len(job_ids)
    if expired:
        log.info("media_expired", jobs=expired)
    return expired


async def purge_deleted_jobs(context: procrastinate.JobContext, timestamp: int) -> int:
    return await purge_deleted_once(services_of(context.additional_context, GenerationServices))


async def purge_deleted_once(services: GenerationServices) -> int:
    """Delete jobs soft-deleted longer ago than the window, and their files; return how many."""
    settings = services.settings
    age = settings.deleted_job_retention_days * _DAY
    purged = 0
    for _ in range(settings.retention_max_batches):
        async with services.sessions() as session:
            count, keys = await jobs.purge_deleted(session, age, settings.retention_batch)
            await session.commit()
        if not count:
            break
        await services.storage.delete(keys)  # once the rows are gone for good
        purged += count
    if purged:
        log.info("deleted_jobs_purged", jobs=purged)
    return purged
