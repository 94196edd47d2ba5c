"""The worker's side of a job: move it forward one step per task run.

`advance_job` is the only job task. Each run looks at the job and does the next thing — submit
it, or poll it once — then queues itself again with a growing delay while the provider is still
working. A procrastinate lock per job keeps its runs apart, but a worker presumed dead that was
only slow can overlap with its replacement, so every step is safe to repeat and every way a job
can end goes through a compare-and-swap in `jobs.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import procrastinate
import stamina
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.config import Settings
from rendio.generation import jobs
from rendio.generation.jobs import ADVANCE_TASK, UNFINISHED, RunnableJob, job_lock
from rendio.generation.media import (
    ExpiredResult,
    UnusableResult,
    as_jpeg,
    fetch,
    probe_and_thumbnail,
)
from rendio.generation.services import GenerationServices
from rendio.platform.errors import ErrorCode
from rendio.platform.services import services_of
from rendio.providers.base import (
    Download,
    Failure,
    GenerationRequest,
    PollResult,
    ProviderError,
    VideoProvider,
)

log = structlog.get_logger("rendio.generation")
Result = TypeVar("Result")

_FAILURE_CODES = {
    Failure.REJECTED: ErrorCode.PROVIDER_REJECTED,
    Failure.TIMED_OUT: ErrorCode.PROVIDER_TIMEOUT,
    Failure.UNAVAILABLE: ErrorCode.PROVIDER_UNAVAILABLE,
}


def webhook_url(settings: Settings, provider: str) -> str | None:
    """Where `provider` should call back; None without a public URL (then it is polled)."""
    if settings.public_url is None:
        return None
    return f"{settings.public_url.rstrip('/')}/webhooks/{provider}"


def _request(services: GenerationServices, job: RunnableJob) -> GenerationRequest:
    return GenerationRequest(
        job_id=job.job_id,
        provider_model_id=job.provider_model_id,
        prompt=job.prompt,
        duration=int(job.settings["duration"]),
        aspect_ratio=str(job.settings["aspect_ratio"]),
        resolution=str(job.settings["resolution"]),
        image_url=job.image_url,
        options=job.options,
        workdir=services.workdir / str(job.job_id),
        state=job.provider_state,
        webhook_url=webhook_url(services.settings, job.provider),
    )


async def _in_transaction(
    services: GenerationServices, step: Callable[[AsyncSession], Awaitable[Result]]
) -> Result:
    """Run one step against the database in its own committed transaction."""
    async with services.sessions() as session:
        result = await step(session)
        await session.commit()
        return result


async def _fail(
    services: GenerationServices, request: GenerationRequest, code: ErrorCode, message: str
) -> None:
    ended = await _in_transaction(
        services, lambda session: jobs.fail(session, request.job_id, code, message)
    )
    if ended:
        log.info("job_failed", job_id=str(request.job_id), code=code.value, reason=message)
    shutil.rmtree(request.workdir, ignore_errors=True)


def _retrying(settings: Settings, *, create: bool = False) -> AsyncIterator[stamina.Attempt]:
    """Retries of a provider call on what may pass. A `create` is not sent again when the first
    may have been carried out (its answer was lost): the provider would run the work twice."""
    return stamina.retry_context(
        on=lambda error: (
            isinstance(error, ProviderError)
            and error.retryable
            and not (create and error.maybe_done)
        ),
        attempts=settings.provider_retries + 1,
        timeout=None,
        wait_initial=settings.provider_retry_initial,
        wait_max=settings.provider_retry_max,
        wait_jitter=settings.provider_retry_initial / 2,
    )


async def advance_job(
    context: procrastinate.JobContext, job_id: str, polls: int = 0, look_now: bool = False
) -> None:
    """One step of a job. A `look_now` run (a webhook asked for it) polls once and queues
    nothing: the job's own chain of scheduled looks goes on, and stops once the job ended."""
    services = services_of(context.additional_context, GenerationServices)
    job = await _in_transaction(services, lambda session: jobs.load(session, uuid.UUID(job_id)))
    if job is None or job.status not in UNFINISHED:
        return
    request = _request(services, job)
    provider = services.providers.get(job.provider)
    called_back = provider is not None and provider.calls_back and request.webhook_url is not None
    if provider is None:
        await _fail(services, request, ErrorCode.PROVIDER_UNAVAILABLE, "provider not configured")
        return
    if datetime.now(UTC) >= job.deadline_at:
        if job.provider_job_id is not None:
            if await _ended_at_last_look(services, provider, request, job.provider_job_id):
                return
            await _cancel_quietly(provider, job.provider_job_id, request)
        await _fail(services, request, *jobs.deadline_failure(job.status))
        return
    if job.provider_job_id is None:
        if look_now:
            return
        submitted = await _submit(services, provider, request)
        if submitted is not None:
            # Submitted: look again soon. Waiting for a slot: look again less and less often.
            polls = 0 if submitted else polls + 1
            await _again(context, services, job, polls=polls, sparse=submitted and called_back)
        return
    if await _poll(services, provider, request, job.provider_job_id) and not look_now:
        await _again(context, services, job, polls=polls + 1, sparse=called_back)


async def _submit(
    services: GenerationServices, provider: VideoProvider, request: GenerationRequest
) -> bool | None:
    """Hand the job to its provider once it has a slot there: True if it was taken and needs
    following, False if it waits for a slot, None if it is over."""
    capacity = services.settings.provider_max_in_flight
    started = await _in_transaction(
        services, lambda session: jobs.start(session, request.job_id, provider.name, capacity)
    )
    if started is jobs.Start.WAITING:
        return False
    if started is jobs.Start.ENDED:
        return None  # do not spend a provider's money on it
    try:
        async for attempt in _retrying(services.settings, create=True):
            with attempt:
                submission = await provider.submit(request)
    except ProviderError as error:
        code = ErrorCode.PROVIDER_UNAVAILABLE if error.retryable else ErrorCode.PROVIDER_REJECTED
        await _fail(services, request, code, str(error))
        return None
    saved = await _in_transaction(
        services,
        lambda session: jobs.save_provider_job(
            session, request.job_id, submission.provider_job_id, submission.state
        ),
    )
    if not saved:  # it ended meanwhile (the sweeper, past its deadline)
        followed = dataclasses.replace(request, state=submission.state)
        await _cancel_quietly(provider, submission.provider_job_id, followed)
        return None
    log.info("job_submitted", job_id=str(request.job_id), provider=provider.name)
    return True


async def _ended_at_last_look(
    services: GenerationServices,
    provider: VideoProvider,
    request: GenerationRequest,
    provider_job_id: str,
) -> bool:
    """At the deadline, one more look before giving up: a video the provider finished (and
    will bill) since the last look, or whose callback was lost, is delivered, not refunded."""
    try:
        result = await provider.poll(provider_job_id, request)
    except ProviderError:
        return False
    if result.status == "completed":
        await finish(services, request, result)
        return True
    if result.status == "failed":
        await _fail(services, request, _FAILURE_CODES[result.failure], result.error or "failed")
        return True
    return False


async def _poll(
    services: GenerationServices,
    provider: VideoProvider,
    request: GenerationRequest,
    provider_job_id: str,
) -> bool:
    """Ask the provider once; True if it is still working."""
    try:
        async for attempt in _retrying(services.settings):
            with attempt:
                result = await provider.poll(provider_job_id, request)
    except ProviderError as error:
        await _fail(services, request, ErrorCode.PROVIDER_UNAVAILABLE, str(error))
        return False
    if result.status == "completed":
        await finish(services, request, result)
        return False
    if result.status == "failed":
        code = _FAILURE_CODES[result.failure]
        await _fail(services, request, code, result.error or "provider failed")
        return False
    await _in_transaction(
        services,
        lambda session: jobs.report_progress(session, request.job_id, result.progress or 0),
    )
    return True


async def finish(
    services: GenerationServices, request: GenerationRequest, result: PollResult
) -> None:
    """Copy the result into storage with a thumbnail, then complete the job.

    Keys are unique to this run: if two runs of one job overlap (a worker presumed dead that
    was only slow), the one that loses the compare-and-swap deletes its own copies, never the
    winner's.
    """
    run = uuid.uuid4().hex[:12]
    video_key = f"videos/{request.job_id}/{run}/video.mp4"
    thumbnail_key = f"videos/{request.job_id}/{run}/thumbnail.jpg"
    thumbnail = request.workdir / f"thumbnail-{run}.jpg"
    try:
        video = await _result_file(services, request, result, run)
        await asyncio.to_thread(probe_and_thumbnail, video, thumbnail)
        if result.thumbnail is not None:
            await _provider_thumbnail(services, result.thumbnail, thumbnail)
        await services.storage.put_file(video_key, video)
        await services.storage.put_file(thumbnail_key, thumbnail)
    except UnusableResult as error:
        await _fail(services, request, ErrorCode.PROVIDER_REJECTED, f"unusable result: {error}")
        return
    except (ExpiredResult, ProviderError) as error:
        message = f"the result could not be fetched: {error}"
        await _fail(services, request, ErrorCode.STORAGE_ERROR, message)
        return
    except (OSError, ValueError) as error:
        log.error("job_storage_failed", job_id=str(request.job_id), error=str(error))
        message = f"storing the result failed: {error}"
        await _fail(services, request, ErrorCode.STORAGE_ERROR, message)
        return
    completed = await _in_transaction(
        services,
        lambda session: jobs.complete(
            session, request.job_id, video_key, thumbnail_key, result.cost
        ),
    )
    if completed:
        log.info("job_completed", job_id=str(request.job_id))
        shutil.rmtree(request.workdir, ignore_errors=True)
    else:
        await services.storage.delete([video_key, thumbnail_key])
        thumbnail.unlink(missing_ok=True)


async def _result_file(
    services: GenerationServices, request: GenerationRequest, result: PollResult, run: str
) -> Path:
    """The result as a local file: the provider's own, or fetched (with retries) from it."""
    if result.download is not None:
        target = request.workdir / f"result-{run}.mp4"
        settings = services.settings
        async for attempt in _retrying(settings):
            with attempt:
                await fetch(
                    result.download,
                    target,
                    max_bytes=settings.result_max_bytes,
                    seconds=settings.result_timeout,
                )
        return target
    if result.video is None or not result.video.is_file():
        raise UnusableResult("the provider reported no video file")
    return result.video


async def _provider_thumbnail(
    services: GenerationServices, download: Download, thumbnail: Path
) -> None:
    """Use the provider's thumbnail when it is an image we can read; else keep ours (the
    first frame), because a missing preview is no reason to fail a paid video."""
    candidate = thumbnail.with_name(thumbnail.name + ".provider")
    try:
        await fetch(download, candidate, max_bytes=20_000_000, seconds=60)
        await asyncio.to_thread(as_jpeg, candidate, thumbnail)
    except Exception as error:  # optional: whatever is wrong with it, ours is kept
        log.warning("provider_thumbnail_unusable", error=repr(error))
    finally:
        candidate.unlink(missing_ok=True)


async def _cancel_quietly(
    provider: VideoProvider, provider_job_id: str, request: GenerationRequest
) -> None:
    try:
        await provider.cancel(provider_job_id, request)
    except ProviderError as error:
        log.warning("job_cancel_failed", job_id=str(request.job_id), error=str(error))


async def _again(
    context: procrastinate.JobContext,
    services: GenerationServices,
    job: RunnableJob,
    *,
    polls: int,
    sparse: bool = False,
) -> None:
    """Queue the next look at the job: soon at first, then less often, never past the
    deadline (so the deadline is noticed on time). `sparse` when the provider calls back:
    polling is then only the fallback for a lost callback, and waits up to
    `poll_max_with_webhooks` (so one worker can follow thousands of jobs)."""
    settings = services.settings
    longest = settings.poll_max_with_webhooks if sparse else settings.poll_max
    delay = min(settings.poll_initial * 1.5**polls, longest)
    until_deadline = (job.deadline_at - datetime.now(UTC)).total_seconds()
    delay = max(0.05, min(delay, until_deadline + 0.05))
    await context.app.configure_task(
        ADVANCE_TASK, lock=job_lock(job.job_id), schedule_in={"seconds": delay}
    ).defer_async(job_id=str(job.job_id), polls=polls)
