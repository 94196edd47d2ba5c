"""The worker's side of generation: move each job forward one step per task run.

`advance_job` is the only job task. Each run looks at the job and does the next thing —
submit it, or poll it once — then queues itself again with a growing delay while the provider
is still working. A procrastinate lock per job keeps its runs apart, but a worker presumed dead
that was only slow can overlap with its replacement, so every step is safe to repeat and every
way a job can end goes through the compare-and-swap in `service.py`.

`sweep` (periodic) recovers what a crash strands: tasks of dead workers are run again, jobs
past their deadline are failed and refunded, unfinished jobs nobody is following are queued
again, and scratch folders of ended jobs are removed.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import procrastinate
import procrastinate.exceptions
import stamina
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rendio.config import Settings
from rendio.generation.service import ADVANCE_TASK, UNFINISHED, complete_job, fail_job, job_lock
from rendio.platform.errors import ErrorCode
from rendio.platform.storage import Storage
from rendio.providers.base import GenerationRequest, PollResult, ProviderError, VideoProvider
from rendio.providers.local_render import write_thumbnail

log = structlog.get_logger("rendio.generation")
_DEADLINE_GRACE_SECONDS = 60
# Unexpected errors (the database away, a bug) are retried by procrastinate; provider errors
# never reach it, they end the job.
_TASK_RETRY = procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2)


@dataclass(frozen=True)
class Runtime:
    """What tasks need, handed to the worker as additional context."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    providers: dict[str, VideoProvider]
    storage: Storage

    @property
    def workdir(self) -> Path:
        return self.settings.data_dir / "work"


def _runtime(context: procrastinate.JobContext) -> Runtime:
    return context.additional_context["runtime"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Job:
    job_id: uuid.UUID
    status: str
    provider: str
    provider_job_id: str | None
    deadline_at: datetime
    request: GenerationRequest


async def _load(runtime: Runtime, job_id: uuid.UUID) -> _Job | None:
    async with runtime.sessions() as session:
        row = (
            await session.execute(
                text(
                    "SELECT j.status, j.provider, j.provider_job_id, j.deadline_at, j.prompt, "
                    "j.settings, j.image_url, m.provider_model_id, m.options "
                    "FROM video_jobs j JOIN models m ON m.id = j.model_id WHERE j.job_id = :id"
                ),
                {"id": job_id},
            )
        ).one_or_none()
    if row is None:
        return None
    request = GenerationRequest(
        job_id=job_id,
        provider_model_id=row.provider_model_id,
        prompt=row.prompt,
        duration=int(row.settings["duration"]),
        aspect_ratio=str(row.settings["aspect_ratio"]),
        resolution=str(row.settings["resolution"]),
        image_url=row.image_url,
        options=dict(row.options or {}),
        workdir=runtime.workdir / str(job_id),
    )
    return _Job(job_id, row.status, row.provider, row.provider_job_id, row.deadline_at, request)


async def _execute(runtime: Runtime, sql: str, **params: Any) -> list[Any]:
    """One statement in its own committed transaction; the rows it returned."""
    async with runtime.sessions() as session:
        result = await session.execute(text(sql), params)
        rows = list(result.all()) if result.returns_rows else []
        await session.commit()
        return rows


async def _fail(runtime: Runtime, job: _Job, code: ErrorCode, message: str) -> None:
    async with runtime.sessions() as session:
        ended = await fail_job(session, job.job_id, code, message)
        await session.commit()
    if ended:
        log.info("job_failed", job_id=str(job.job_id), code=code.value, reason=message)
    shutil.rmtree(job.request.workdir, ignore_errors=True)


def _retrying(settings: Settings) -> Any:
    return stamina.retry_context(
        on=lambda error: isinstance(error, ProviderError) and error.retryable,
        attempts=settings.provider_retries + 1,
        timeout=None,
        wait_initial=settings.provider_retry_initial,
        wait_max=settings.provider_retry_max,
        wait_jitter=settings.provider_retry_initial / 2,
    )


async def advance_job(context: procrastinate.JobContext, job_id: str, polls: int = 0) -> None:
    runtime = _runtime(context)
    job = await _load(runtime, uuid.UUID(job_id))
    if job is None or job.status not in UNFINISHED:
        return
    provider = runtime.providers.get(job.provider)
    if provider is None:
        await _fail(runtime, job, ErrorCode.PROVIDER_UNAVAILABLE, "provider not configured")
        return
    if datetime.now(UTC) >= job.deadline_at:
        if job.provider_job_id is not None:
            await _cancel_quietly(provider, job)
        await _fail(runtime, job, ErrorCode.PROVIDER_TIMEOUT, "deadline passed")
        return
    if job.provider_job_id is None:
        if await _submit(runtime, provider, job):
            await _again(context, runtime, job, polls=0)
        return
    if await _poll(runtime, provider, job, job.provider_job_id):
        await _again(context, runtime, job, polls=polls + 1)


async def _submit(runtime: Runtime, provider: VideoProvider, job: _Job) -> bool:
    """Hand the job to its provider; True if it was taken and needs following."""
    still_open = await _execute(
        runtime,
        "UPDATE video_jobs SET status = 'processing', updated_at = now() "
        "WHERE job_id = :id AND status IN ('pending', 'processing') RETURNING job_id",
        id=job.job_id,
    )
    if not still_open:  # ended meanwhile: do not spend a provider's money on it
        return False
    try:
        async for attempt in _retrying(runtime.settings):
            with attempt:
                provider_job_id = await provider.submit(job.request)
    except ProviderError as error:
        code = ErrorCode.PROVIDER_UNAVAILABLE if error.retryable else ErrorCode.PROVIDER_REJECTED
        await _fail(runtime, job, code, str(error))
        return False
    saved = await _execute(
        runtime,
        "UPDATE video_jobs SET provider_job_id = :pid, updated_at = now() "
        "WHERE job_id = :id AND status = 'processing' RETURNING job_id",
        id=job.job_id,
        pid=provider_job_id,
    )
    if not saved:  # it ended meanwhile (the sweeper, past its deadline)
        await _cancel_quietly(provider, job)
        return False
    log.info("job_submitted", job_id=str(job.job_id), provider=job.provider)
    return True


async def _poll(runtime: Runtime, provider: VideoProvider, job: _Job, provider_job_id: str) -> bool:
    """Ask the provider once; True if it is still working."""
    try:
        async for attempt in _retrying(runtime.settings):
            with attempt:
                result = await provider.poll(provider_job_id, job.request)
    except ProviderError as error:
        await _fail(runtime, job, ErrorCode.PROVIDER_UNAVAILABLE, str(error))
        return False
    if result.status == "completed":
        await _finish(runtime, job, result)
        return False
    if result.status == "failed":
        await _fail(runtime, job, ErrorCode.PROVIDER_REJECTED, result.error or "provider failed")
        return False
    await _execute(
        runtime,
        "UPDATE video_jobs SET progress = GREATEST(progress, :progress), updated_at = now() "
        "WHERE job_id = :id AND status = 'processing'",
        id=job.job_id,
        progress=max(0, min(99, result.progress or 0)),
    )
    return True


async def _finish(runtime: Runtime, job: _Job, result: PollResult) -> None:
    """Copy the result into storage with a thumbnail, then complete the job.

    Keys are unique to this run: if two runs of one job overlap (a worker presumed dead that
    was only slow), the one that loses the compare-and-swap deletes its own copies, never the
    winner's.
    """
    run = uuid.uuid4().hex[:12]
    video_key = f"videos/{job.job_id}/{run}/video.mp4"
    thumbnail_key = f"videos/{job.job_id}/{run}/thumbnail.jpg"
    try:
        if result.video is None or not result.video.is_file():
            raise OSError("the provider reported no video file")
        thumbnail = job.request.workdir / f"thumbnail-{run}.jpg"
        await asyncio.to_thread(write_thumbnail, result.video, thumbnail)
        await runtime.storage.put_file(video_key, result.video)
        await runtime.storage.put_file(thumbnail_key, thumbnail)
    except (OSError, ValueError, av.FFmpegError) as error:
        log.error("job_storage_failed", job_id=str(job.job_id), error=str(error))
        await _fail(runtime, job, ErrorCode.STORAGE_ERROR, f"storing the result failed: {error}")
        return
    async with runtime.sessions() as session:
        completed = await complete_job(session, job.job_id, video_key, thumbnail_key)
        await session.commit()
    if completed:
        log.info("job_completed", job_id=str(job.job_id))
        shutil.rmtree(job.request.workdir, ignore_errors=True)
    else:
        await runtime.storage.delete([video_key, thumbnail_key])
        thumbnail.unlink(missing_ok=True)


async def _cancel_quietly(provider: VideoProvider, job: _Job) -> None:
    if job.provider_job_id is None:
        return
    try:
        await provider.cancel(job.provider_job_id, job.request)
    except ProviderError as error:
        log.warning("job_cancel_failed", job_id=str(job.job_id), error=str(error))


async def _again(
    context: procrastinate.JobContext, runtime: Runtime, job: _Job, *, polls: int
) -> None:
    """Queue the next look at the job: soon at first, then less often, never past the
    deadline (so the deadline is noticed on time)."""
    settings = runtime.settings
    delay = min(settings.poll_initial * 1.5**polls, settings.poll_max)
    until_deadline = (job.deadline_at - datetime.now(UTC)).total_seconds()
    delay = max(0.05, min(delay, until_deadline + 0.05))
    await context.app.configure_task(
        ADVANCE_TASK, lock=job_lock(job.job_id), schedule_in={"seconds": delay}
    ).defer_async(job_id=str(job.job_id), polls=polls)


async def sweep(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    runtime = _runtime(context)
    return await sweep_once(context.app, runtime)


async def sweep_once(app: procrastinate.App, runtime: Runtime) -> dict[str, int]:
    """One recovery pass; returns what it did (also logged)."""
    settings = runtime.settings
    retried = 0
    stalled = await app.job_manager.get_stalled_jobs(
        seconds_since_heartbeat=settings.worker_stalled_after
    )
    for stuck in stalled:
        if stuck.task_name != ADVANCE_TASK:
            continue
        try:
            await app.job_manager.retry_job(stuck)
            retried += 1
        except procrastinate.exceptions.ProcrastinateException as error:
            # It finished or was retried by someone else between the two queries.
            log.info("sweep_retry_skipped", job=stuck.id, reason=str(error))

    async with runtime.sessions() as session:
        overdue = (
            (
                await session.execute(
                    text(
                        "SELECT job_id FROM video_jobs WHERE status IN ('pending', 'processing') "
                        "AND deadline_at < now() - make_interval(secs => :grace)"
                    ),
                    {"grace": _DEADLINE_GRACE_SECONDS},
                )
            )
            .scalars()
            .all()
        )
        for job_id in overdue:
            await fail_job(session, job_id, ErrorCode.PROVIDER_TIMEOUT, "deadline passed")
        await session.commit()
        stranded = (
            (
                await session.execute(
                    text(
                        "SELECT j.job_id FROM video_jobs j "
                        "WHERE j.status IN ('pending', 'processing') "
                        "AND j.updated_at < now() - make_interval(secs => :stale) "
                        "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p "
                        "  WHERE p.lock = 'video-job:' || j.job_id "
                        "  AND p.status IN ('todo', 'doing'))"
                    ),
                    {"stale": settings.job_stale_after},
                )
            )
            .scalars()
            .all()
        )
    requeued = 0
    for job_id in stranded:
        try:
            await app.configure_task(
                ADVANCE_TASK, lock=job_lock(job_id), queueing_lock=job_lock(job_id)
            ).defer_async(job_id=str(job_id))
            requeued += 1
        except procrastinate.exceptions.AlreadyEnqueued:
            pass
    cleaned = await _clean_workdirs(runtime)
    done = {
        "retried": retried,
        "overdue": len(overdue),
        "requeued": requeued,
        "cleaned": cleaned,
    }
    if any(done.values()):
        log.info("sweep", **done)
    return done


async def _clean_workdirs(runtime: Runtime) -> int:
    """Remove scratch folders left by jobs that are no longer unfinished (a render that
    outlived its job, a job deleted with its account). Only folders untouched for a while are
    considered, so a job just created is never raced."""
    root = runtime.workdir
    if not root.is_dir():
        return 0
    cutoff = datetime.now(UTC).timestamp() - runtime.settings.job_stale_after
    candidates = {}
    for folder in root.iterdir():
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                candidates[uuid.UUID(folder.name)] = folder
        except (ValueError, OSError):
            continue
    if not candidates:
        return 0
    async with runtime.sessions() as session:
        unfinished = set(
            (
                await session.execute(
                    text(
                        "SELECT job_id FROM video_jobs WHERE job_id = ANY(:ids) "
                        "AND status IN ('pending', 'processing')"
                    ),
                    {"ids": list(candidates)},
                )
            )
            .scalars()
            .all()
        )
    stale = [folder for job_id, folder in candidates.items() if job_id not in unfinished]
    for folder in stale:
        await asyncio.to_thread(shutil.rmtree, folder, True)
    return len(stale)


def register(app: procrastinate.App, *, sweep_every: int) -> None:
    """Add the generation tasks, and the periodic sweep, to a queue app (see queue.py)."""
    app.task(name=ADVANCE_TASK, pass_context=True, retry=_TASK_RETRY)(advance_job)
    # One sweep at a time (lock), even when one outlasts the period.
    sweeper = app.task(name="generation:sweep", pass_context=True, lock="generation:sweep")(sweep)
    # The sixth cron field is seconds.
    app.periodic(cron=f"* * * * * */{sweep_every}", periodic_id="sweep")(sweeper)
