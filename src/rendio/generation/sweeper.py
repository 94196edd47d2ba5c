"""Crash recovery, run periodically: nothing a dead process leaves behind may strand a paid job.

Sweeps hold no lock and may run side by side (every step below is a compare-and-swap or
tolerates losing a race), so a sweep killed mid-way cannot block the next. Each pass: tasks of
any kind whose worker's heartbeat stopped are run again, jobs past their deadline are
failed and refunded, unfinished jobs nobody is following are queued again, and scratch folders
of ended jobs are removed.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime

import procrastinate
import procrastinate.exceptions
import structlog

from rendio.generation import jobs
from rendio.generation.jobs import ADVANCE_TASK, job_lock
from rendio.generation.services import GenerationServices
from rendio.platform.services import services_of

log = structlog.get_logger("rendio.generation")
DEADLINE_GRACE_SECONDS = 60


async def sweep(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    return await sweep_once(
        context.app, services_of(context.additional_context, GenerationServices)
    )


async def sweep_once(app: procrastinate.App, services: GenerationServices) -> dict[str, int]:
    """One recovery pass; returns what it did (also logged)."""
    settings = services.settings
    retried = 0
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.worker_stalled_after
    )
    # Every kind of task (a job step, an event, a sweep itself): each is safe to run twice.
    for stuck in stalled:
        try:
            await app.job_manager.retry_job(stuck)
            retried += 1
        except procrastinate.exceptions.ProcrastinateException as error:
            # It finished or was retried by someone else between the two queries.
            log.info("sweep_retry_skipped", job=stuck.id, reason=str(error))

    async with services.sessions() as session:
        overdue = await jobs.overdue(session, DEADLINE_GRACE_SECONDS)
        for job_id, status in overdue:
            await jobs.fail(session, job_id, *jobs.deadline_failure(status))
        await session.commit()
        stranded = await jobs.stranded(session, settings.job_stale_after)
    requeued = 0
    for job_id in stranded:
        try:
            await app.configure_task(
                ADVANCE_TASK, lock=job_lock(job_id), queueing_lock=job_lock(job_id)
            ).defer_async(job_id=str(job_id))
            requeued += 1
        except procrastinate.exceptions.AlreadyEnqueued:
            pass
    cleaned = await _clean_workdirs(services)
    done = {
        "retried": retried,
        "overdue": len(overdue),
        "requeued": requeued,
        "cleaned": cleaned,
    }
    if any(done.values()):
        log.info("sweep", **done)
    return done


async def _clean_workdirs(services: GenerationServices) -> int:
    """Remove scratch folders left by jobs that are no longer unfinished (a render that
    outlived its job, a job deleted with its account). Only folders untouched for a while are
    considered, so a job just created is never raced."""
    root = services.workdir
    if not root.is_dir():
        return 0
    cutoff = datetime.now(UTC).timestamp() - services.settings.job_stale_after
    candidates = {}
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                candidates[uuid.UUID(folder.name)] = folder
        except (ValueError, OSError):
            continue
    if not candidates:
        return 0
    async with services.sessions() as session:
        unfinished = await jobs.unfinished_among(session, list(candidates))
    stale = [folder for job_id, folder in candidates.items() if job_id not in unfinished]
    for folder in stale:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    return len(stale)
