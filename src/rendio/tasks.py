"""The composition root for background work: every domain's tasks, periodic jobs and the
handlers of `job_ended`.

Generation publishes `job_ended` in the transaction that ends a job; it never learns who
listens. A domain that reacts to finished jobs (push, outbound notifications, metrics) adds a
handler to `JOB_ENDED_HANDLERS`. Handlers run one after the other in one task, which
procrastinate retries if any of them fails, so each must be safe to run twice for one event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import procrastinate
from prometheus_client import Counter, Histogram

from rendio.config import Settings
from rendio.generation.jobs import ADVANCE_TASK, JOB_ENDED_TASK, JobEnded
from rendio.generation.runner import advance_job
from rendio.generation.sweeper import sweep
from rendio.history.retention import expire_media, purge_deleted_jobs
from rendio.platform.idempotency import purge_expired
from rendio.platform.retention import purge_old_rows
from rendio.platform.services import services_of
from rendio.push.handler import PUSH_RETRY, SEND_TASK, notify_job_ended, send_delivery
from rendio.services import Services

JobEndedHandler = Callable[[Services, JobEnded], Awaitable[None]]

JOBS_ENDED = Counter(
    "rendio_jobs_ended_total", "Video jobs ended, by outcome and provider", ["status", "provider"]
)
GENERATION_SECONDS = Histogram(
    "rendio_generation_seconds",
    "From a job's creation to its ending, by provider and outcome",
    ["provider", "status"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600),
)


async def count_ending(services: Services, event: JobEnded) -> None:
    JOBS_ENDED.labels(event.status.value, event.provider).inc()
    GENERATION_SECONDS.labels(event.provider, event.status.value).observe(event.seconds)


JOB_ENDED_HANDLERS: tuple[JobEndedHandler, ...] = (count_ending, notify_job_ended)

# Log-like tables and their timestamp column, kept RENDIO_LOG_RETENTION_DAYS.
LOG_TABLES = {
    "webhook_deliveries": "received_at",
    "error_log": "created_at",
    "ops_counts": "minute",
    "push_deliveries": "created_at",
}


async def purge_logs(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    settings = services_of(context.additional_context, Services).settings
    return await purge_old_rows(
        context.app,
        LOG_TABLES,
        age_seconds=settings.log_retention_days * 86_400,
        batch=settings.retention_batch,
        max_batches=settings.retention_max_batches,
    )


# Unexpected errors (the database away, a bug) are retried by procrastinate; provider errors
# never reach it, they end the job.
_RETRY = procrastinate.RetryStrategy(max_attempts=5, exponential_wait=2)


def _job_ended(handlers: Sequence[JobEndedHandler]) -> Callable[..., Awaitable[None]]:
    async def job_ended(
        context: procrastinate.JobContext, job_id: str, status: str, provider: str, seconds: float
    ) -> None:
        services = services_of(context.additional_context, Services)
        event = JobEnded.of_args(job_id, status, provider, seconds)
        for handler in handlers:
            await handler(services, event)

    return job_ended


def registration(
    settings: Settings, job_ended_handlers: Sequence[JobEndedHandler] = JOB_ENDED_HANDLERS
) -> Callable[[procrastinate.App], None]:
    """What `platform.queue.create_queue` runs to give a queue app every task."""

    def register(app: procrastinate.App) -> None:
        purge = app.task(name="maintenance:purge_expired_idempotency_keys", pass_context=True)(
            purge_expired
        )
        app.periodic(cron="*/15 * * * *")(purge)
        app.task(name=ADVANCE_TASK, pass_context=True, retry=_RETRY)(advance_job)
        # No `lock`: a sweep left `doing` by a dead worker would hold it and queue every later
        # sweep behind it, so nothing would recover anything (sweeps are safe side by side).
        # The queueing lock only keeps sweeps from piling up while one waits to start.
        sweeper = app.task(
            name="generation:sweep", pass_context=True, queueing_lock="generation:sweep"
        )(sweep)
        # The sixth cron field is seconds.
        app.periodic(cron=f"* * * * * */{settings.sweep_every}", periodic_id="sweep")(sweeper)
        app.task(name=JOB_ENDED_TASK, pass_context=True, retry=_RETRY)(
            _job_ended(job_ended_handlers)
        )
        app.task(name=SEND_TASK, pass_context=True, retry=PUSH_RETRY)(send_delivery)
        # Retention, hourly; each safe to run twice or on several workers at once.
        for name, minute, function in (
            ("history:expire_media", 7, expire_media),
            ("history:purge_deleted_jobs", 17, purge_deleted_jobs),
            ("maintenance:purge_logs", 27, purge_logs),
        ):
            task = app.task(name=name, pass_context=True, queueing_lock=name)(function)
            app.periodic(cron=f"{minute} * * * *")(task)

    return register
