"""The one owner of job state: the `JobStatus` values and every read and compare-and-swap of
`video_jobs`.

Every end of a job is a compare-and-swap on its status (`pending`/`processing` → `completed` or
`failed`): whichever of the worker, a second worker or the sweeper gets there first decides, and
only a swap to `failed` refunds — with the ledger transaction id `refund:<job id>` as the second
lock. So a job is charged once and refunded at most once, whatever runs twice. The swap that
ends a job also queues the `job_ended` event in the same transaction, so subscribers (push,
metrics) hear of every ending exactly when it commits, and never of one that rolled back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation.models import VideoJob
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform.errors import ErrorCode
from rendio.platform.opslog import record_failure
from rendio.platform.queue import defer_in_transaction
from rendio.platform.reads import Reads

ADVANCE_TASK = "generation:advance_job"
JOB_ENDED_TASK = "generation:job_ended"


class JobStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


UNFINISHED = (JobStatus.PENDING, JobStatus.PROCESSING)


def job_lock(job_id: uuid.UUID | str) -> str:
    """The procrastinate lock that keeps one job's tasks from ever running side by side."""
    return f"video-job:{job_id}"


def refund_transaction_id(job_id: uuid.UUID) -> str:
    """The one ledger transaction id of a job's refund, whoever refunds it: so it happens once."""
    return f"refund:{job_id}"


@dataclass(frozen=True)
class JobEnded:
    """The event every ending of a job publishes (task `generation:job_ended`)."""

    job_id: uuid.UUID
    status: JobStatus
    provider: str
    # From the job's creation to its ending.
    seconds: float

    def as_args(self) -> dict[str, Any]:
        return {
            "job_id": str(self.job_id),
            "status": self.status.value,
            "provider": self.provider,
            "seconds": self.seconds,
        }

    @classmethod
    def of_args(cls, job_id: str, status: str, provider: str, seconds: float) -> JobEnded:
        return cls(uuid.UUID(job_id), JobStatus(status), provider, float(seconds))


@dataclass(frozen=True)
class RunnableJob:
    """A job as the runner needs it: where it stands and what to ask its provider for."""

    job_id: uuid.UUID
    status: JobStatus
    provider: str
    provider_job_id: str | None
    deadline_at: datetime
    provider_model_id: str
    prompt: str
    settings: dict[str, Any]
    image_url: str | None
    options: dict[str, Any]
    provider_state: dict[str, Any]


# A new `pending` job as a step of a larger statement (generate-video's start): one row per row
# of `source` (none when the debit there was refused).
_INSERT_AFTER = (
    "INSERT INTO video_jobs (job_id, user_id, model_id, prompt, settings, image_url, provider, "
    "provider_model_id, credits_used, deadline_seconds, deadline_at) SELECT :job_id, :user_id, "
    ":model_id, :prompt, CAST(:settings AS jsonb), :image_url, :provider, "
    "(SELECT provider_model_id FROM models WHERE id = :model_id), :cost, :deadline, "
    "now() + make_interval(secs => :wait) FROM {source} RETURNING job_id"
)
_LOAD = text(
    "SELECT j.status, j.provider, j.provider_job_id, j.deadline_at, j.prompt, j.settings, "
    "j.image_url, COALESCE(j.provider_model_id, m.provider_model_id) AS provider_model_id, "
    "m.options, j.provider_state "
    "FROM video_jobs j JOIN models m ON m.id = j.model_id WHERE j.job_id = :id"
)
_STATUS_OF = text("SELECT status FROM video_jobs WHERE job_id = :id")
_IN_FLIGHT = text(
    "SELECT count(*) FROM video_jobs WHERE provider = :provider AND status = 'processing'"
)
_LOCK_PROVIDER_SLOTS = text(
    "SELECT pg_advisory_xact_lock(hashtextextended('provider-slots:' || :provider, 0))"
)
# A waiting job starts when it is among the first `free slots` waiting jobs of its provider in
# fair order: owners with fewer jobs in flight there first, then the oldest. Its deadline
# starts now. Callers hold the provider's slot lock, so two starts never count the same slot.
_START_IF_FREE = text(
    """
    WITH flying AS (
        SELECT user_id, count(*) AS n FROM video_jobs
        WHERE provider = :provider AND status = 'processing' GROUP BY user_id
    ), free AS (
        SELECT :capacity - COALESCE((SELECT sum(n) FROM flying), 0) AS slots
    ), turn AS (
        SELECT j.job_id FROM video_jobs j LEFT JOIN flying f ON f.user_id = j.user_id
        WHERE j.provider = :provider AND j.status = 'pending'
        ORDER BY COALESCE(f.n, 0), j.created_at, j.job_id
        LIMIT GREATEST((SELECT slots FROM free), 0)
    )
    UPDATE video_jobs SET status = 'processing', updated_at = now(),
        deadline_at = now() + make_interval(secs => COALESCE(deadline_seconds, 600))
    WHERE job_id = :id AND status = 'pending' AND job_id IN (SELECT job_id FROM turn)
    RETURNING job_id
    """
)
_SAVE_PROVIDER_JOB = text(
    "UPDATE video_jobs SET provider_job_id = :pid, provider_state = CAST(:state AS jsonb), "
    "updated_at = now() WHERE job_id = :id AND status = 'processing' RETURNING job_id"
)
_BY_PROVIDER_ID = text(
    "SELECT job_id FROM video_jobs WHERE provider_job_id = :pid AND provider = :provider "
    "AND status IN ('pending', 'processing')"
)
# Only a step forward is written: an unchanged row costs a write, a trigger and a NOTIFY to
# every API process on each poll.
_PROGRESS = text(
    "UPDATE video_jobs SET progress = :progress, updated_at = now() "
    "WHERE job_id = :id AND status = 'processing' AND progress < :progress"
)
_COMPLETE = text(
    "UPDATE video_jobs SET status = 'completed', progress = 100, video_url = :video, "
    "thumbnail_url = :thumbnail, provider_cost = CAST(:cost AS jsonb), completed_at = now(), "
    "updated_at = now() "
    "WHERE job_id = :job_id AND status = 'processing' "
    "RETURNING provider, EXTRACT(EPOCH FROM now() - created_at) AS seconds"
)
_FAIL = text(
    "UPDATE video_jobs SET status = 'failed', error_code = :code, "
    "error_message = :message, completed_at = now(), updated_at = now() "
    "WHERE job_id = :job_id AND status IN ('pending', 'processing') "
    "RETURNING user_id, credits_used, provider, EXTRACT(EPOCH FROM now() - created_at) AS seconds"
)
# A lean read (platform/reads.py): asyncpg placeholders.
_STATUS = (
    "SELECT job_id, status, progress, video_url, thumbnail_url, credits_used, error_code, "
    "created_at, completed_at, media_expired_at FROM video_jobs "
    "WHERE job_id = $1 AND user_id = $2 AND deleted_at IS NULL"
)
# A page of a user's history, newest first, after a (created_at, job_id) keyset position. The
# two partial indexes (active, deleted) serve it whatever the table's size: the planner walks
# the user's index range from the position and stops after `limit` rows.
_PAGE = """
    SELECT j.job_id, j.status, j.progress, j.prompt, j.model_id, m.name AS model_name,
           j.video_url, j.thumbnail_url, j.credits_used, j.error_code, j.created_at,
           j.completed_at, j.deleted_at, j.media_expired_at
    FROM video_jobs j JOIN models m ON m.id = j.model_id
    WHERE j.user_id = :user_id AND j.deleted_at IS {deleted}
      AND (CAST(:status AS text) IS NULL OR j.status = :status)
      AND (CAST(:after_created AS timestamptz) IS NULL
           OR (j.created_at, j.job_id) < (:after_created, :after_job))
    ORDER BY j.created_at DESC, j.job_id DESC
    LIMIT :limit
"""
_PAGE_ACTIVE = text(_PAGE.format(deleted="NULL"))
_PAGE_DELETED = text(_PAGE.format(deleted="NOT NULL"))
# Soft delete keeps the first deletion time; restore clears it. Both answer whether the job is
# the user's, so repeating either is harmless.
_SET_DELETED = text(
    "UPDATE video_jobs SET deleted_at = CASE WHEN :deleted THEN COALESCE(deleted_at, now()) "
    "ELSE NULL END, updated_at = now() "
    "WHERE job_id = :job_id AND user_id = :user_id RETURNING job_id"
)
# Retention takes rows a batch at a time and skips rows another worker holds, so passes on
# several workers share the work and none waits.
_CLAIM_EXPIRED_MEDIA = text(
    "SELECT job_id, video_url, thumbnail_url FROM video_jobs "
    "WHERE (video_url IS NOT NULL OR thumbnail_url IS NOT NULL) "
    "AND completed_at < now() - make_interval(secs => :age) "
    "ORDER BY completed_at LIMIT :batch FOR UPDATE SKIP LOCKED"
)
_MARK_MEDIA_EXPIRED = text(
    "UPDATE video_jobs SET video_url = NULL, thumbnail_url = NULL, media_expired_at = now(), "
    "updated_at = now() WHERE job_id = ANY(:ids)"
)
_PURGE_DELETED = text(
    "DELETE FROM video_jobs WHERE job_id IN ("
    "  SELECT job_id FROM video_jobs WHERE deleted_at < now() - make_interval(secs => :age) "
    "  ORDER BY deleted_at LIMIT :batch FOR UPDATE SKIP LOCKED"
    ") RETURNING video_url, thumbnail_url"
)
_OVERDUE = text(
    "SELECT job_id, status FROM video_jobs WHERE status IN ('pending', 'processing') "
    "AND deadline_at < now() - make_interval(secs => :grace)"
)
# Unfinished, untouched for a while, and with no task queued or running for it.
_STRANDED = text(
    "SELECT j.job_id FROM video_jobs j "
    "WHERE j.status IN ('pending', 'processing') "
    "AND j.updated_at < now() - make_interval(secs => :stale) "
    "AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs p "
    "  WHERE p.lock = 'video-job:' || j.job_id "
    "  AND p.status IN ('todo', 'doing'))"
)
_UNFINISHED_AMONG = text(
    "SELECT job_id FROM video_jobs WHERE job_id = ANY(:ids) AND status IN ('pending', 'processing')"
)
_MEDIA_OF_USER = text(
    "SELECT video_url, thumbnail_url FROM video_jobs WHERE user_id = :user_id "
    "AND (video_url IS NOT NULL OR thumbnail_url IS NOT NULL)"
)


def insert_after(source: str) -> str:
    """SQL inserting a new `pending` job once per row of `source` (a CTE of the caller's
    statement), taking `insert_parameters`."""
    return _INSERT_AFTER.format(source=source)


def insert_parameters(
    *,
    job_id: uuid.UUID,
    user_id: uuid.UUID,
    model_id: uuid.UUID,
    prompt: str,
    settings: dict[str, Any],
    image_url: str | None,
    provider: str,
    cost: int,
    deadline_seconds: int,
    wait_seconds: float,
) -> dict[str, Any]:
    """For a lean statement (platform/reads.py: JSON as objects). Until the job is submitted
    its deadline is the longest it may wait for a provider slot."""
    return {
        "job_id": job_id,
        "user_id": user_id,
        "model_id": model_id,
        "prompt": prompt,
        "settings": settings,
        "image_url": image_url,
        "provider": provider,
        "cost": cost,
        "deadline": deadline_seconds,
        "wait": float(wait_seconds),
    }


async def load(session: AsyncSession, job_id: uuid.UUID) -> RunnableJob | None:
    row = (await session.execute(_LOAD, {"id": job_id})).one_or_none()
    if row is None:
        return None
    return RunnableJob(
        job_id=job_id,
        status=JobStatus(row.status),
        provider=row.provider,
        provider_job_id=row.provider_job_id,
        deadline_at=row.deadline_at,
        provider_model_id=row.provider_model_id,
        prompt=row.prompt,
        settings=dict(row.settings),
        image_url=row.image_url,
        options=dict(row.options or {}),
        provider_state=dict(row.provider_state or {}),
    )


class Start(StrEnum):
    STARTED = "started"  # processing: submit it (again, if a run died before saving the id)
    WAITING = "waiting"  # its provider has no free slot for it yet
    ENDED = "ended"  # it ended meanwhile


async def start(session: AsyncSession, job_id: uuid.UUID, provider: str, capacity: int) -> Start:
    """Take a slot of `provider` for a waiting job (at most `capacity` of its jobs are in flight,
    shared fairly between users) and mark it `processing`, its deadline counted from now."""
    status = (await session.execute(_STATUS_OF, {"id": job_id})).scalar_one_or_none()
    if status == JobStatus.PROCESSING:
        return Start.STARTED
    if status != JobStatus.PENDING:
        return Start.ENDED
    # Full: no need to queue on the provider's lock (the check under it decides otherwise).
    if (await session.execute(_IN_FLIGHT, {"provider": provider})).scalar_one() >= capacity:
        return Start.WAITING
    await session.execute(_LOCK_PROVIDER_SLOTS, {"provider": provider})
    started = await session.execute(
        _START_IF_FREE, {"id": job_id, "provider": provider, "capacity": capacity}
    )
    return Start.STARTED if started.one_or_none() is not None else Start.WAITING


async def save_provider_job(
    session: AsyncSession, job_id: uuid.UUID, provider_job_id: str, state: dict[str, Any]
) -> bool:
    """Remember the provider's id for a processing job, and what following it needs; False if
    it ended meanwhile."""
    saved = await session.execute(
        _SAVE_PROVIDER_JOB, {"id": job_id, "pid": provider_job_id, "state": json.dumps(state)}
    )
    return saved.one_or_none() is not None


async def unfinished_by_provider_id(
    session: AsyncSession, provider: str, provider_job_id: str
) -> uuid.UUID | None:
    """The unfinished job a provider knows by this id (a webhook names it so)."""
    found = await session.execute(_BY_PROVIDER_ID, {"provider": provider, "pid": provider_job_id})
    return found.scalar_one_or_none()


async def report_progress(session: AsyncSession, job_id: uuid.UUID, progress: int) -> None:
    """Progress only moves forward, and never to 100 before the job is completed."""
    await session.execute(_PROGRESS, {"id": job_id, "progress": max(0, min(99, progress))})


async def complete(
    session: AsyncSession,
    job_id: uuid.UUID,
    video_key: str,
    thumbnail_key: str,
    provider_cost: dict[str, Any] | None = None,
) -> bool:
    """Mark a processing job completed with its stored files (and what the provider says it
    cost, for the operator); False if it had already ended."""
    params = {
        "job_id": job_id,
        "video": video_key,
        "thumbnail": thumbnail_key,
        "cost": json.dumps(provider_cost) if provider_cost is not None else None,
    }
    done = (await session.execute(_COMPLETE, params)).one_or_none()
    if done is None:
        return False
    ended = JobEnded(job_id, JobStatus.COMPLETED, done.provider, float(done.seconds))
    await _publish(session, ended)
    return True


def deadline_failure(status: str) -> tuple[ErrorCode, str]:
    """Why a job past its deadline fails: it waited too long for a provider slot, or its
    provider took too long."""
    if status == JobStatus.PENDING:
        return ErrorCode.PROVIDER_UNAVAILABLE, "waited too long for a free provider slot"
    return ErrorCode.PROVIDER_TIMEOUT, "deadline passed"


async def fail(session: AsyncSession, job_id: uuid.UUID, code: ErrorCode, message: str) -> bool:
    """End an unfinished job as failed, refund it and log the failure for the operator; False
    if it had already ended."""
    ended = (
        await session.execute(
            _FAIL,
            {"job_id": job_id, "code": code.value, "message": message.replace("\x00", "")[:1000]},
        )
    ).one_or_none()
    if ended is None:
        return False
    await record_failure(
        session,
        code=code,
        message=message,
        job_id=job_id,
        user_id=ended.user_id,
        provider=ended.provider,
    )
    if ended.credits_used > 0:
        await ledger.add(
            session,
            ended.user_id,
            ended.credits_used,
            reason=Reason.REFUND,
            transaction_id=refund_transaction_id(job_id),
            job_id=job_id,
            details={"error_code": code.value},
        )
    await _publish(
        session, JobEnded(job_id, JobStatus.FAILED, ended.provider, float(ended.seconds))
    )
    return True


async def _publish(session: AsyncSession, event: JobEnded) -> None:
    await defer_in_transaction(session, JOB_ENDED_TASK, event.as_args())


async def status_of(reads: Reads, job_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any] | None:
    """The caller's job as get-video-status shows it, or None (not theirs, deleted, unknown).
    Apps poll it every few seconds per video in flight, so it is a lean read."""
    return await reads.one(_STATUS, (job_id, user_id))


async def page(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    deleted: bool,
    status: JobStatus | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Any]:
    """Up to `limit` of the user's jobs (soft-deleted ones, or the others), newest first,
    strictly after the keyset position `after`."""
    statement = _PAGE_DELETED if deleted else _PAGE_ACTIVE
    created, job = after if after is not None else (None, None)
    rows = await session.execute(
        statement,
        {
            "user_id": user_id,
            "status": status.value if status else None,
            "after_created": created,
            "after_job": job,
            "limit": limit,
        },
    )
    return list(rows)


async def set_deleted(
    session: AsyncSession, job_id: uuid.UUID, user_id: uuid.UUID, *, deleted: bool
) -> bool:
    """Soft-delete (or restore) the user's job; False if the user has no such job."""
    done = await session.execute(
        _SET_DELETED, {"job_id": job_id, "user_id": user_id, "deleted": deleted}
    )
    return done.one_or_none() is not None


async def expire_media(
    session: AsyncSession, older_than_seconds: float, batch: int
) -> tuple[list[uuid.UUID], list[str]]:
    """Claim (row-locked, skipping rows others hold) up to `batch` completed jobs whose files
    are older than the window: their ids and storage keys. The caller deletes the files, then
    `mark_media_expired` in the same transaction."""
    rows = (
        await session.execute(_CLAIM_EXPIRED_MEDIA, {"age": older_than_seconds, "batch": batch})
    ).all()
    keys = [key for row in rows for key in (row.video_url, row.thumbnail_url) if key]
    return [row.job_id for row in rows], keys


async def mark_media_expired(session: AsyncSession, job_ids: list[uuid.UUID]) -> None:
    await session.execute(_MARK_MEDIA_EXPIRED, {"ids": job_ids})


async def purge_deleted(
    session: AsyncSession, older_than_seconds: float, batch: int
) -> tuple[int, list[str]]:
    """Delete up to `batch` jobs soft-deleted longer ago than the window; return how many, and
    their storage keys for the caller to remove once this commits. Ledger rows stay (their
    `job_id` becomes NULL)."""
    rows = (
        await session.execute(_PURGE_DELETED, {"age": older_than_seconds, "batch": batch})
    ).all()
    return len(rows), [key for row in rows for key in row if key]


@dataclass(frozen=True)
class EndedJob:
    user_id: uuid.UUID
    status: JobStatus
    credits_used: int


_ENDED = text("SELECT user_id, status, credits_used FROM video_jobs WHERE job_id = :id")


async def ended_job(session: AsyncSession, job_id: uuid.UUID) -> EndedJob | None:
    """Whose job it is and how it ended (None once the job is gone)."""
    row = (await session.execute(_ENDED, {"id": job_id})).one_or_none()
    if row is None:
        return None
    return EndedJob(row.user_id, JobStatus(row.status), row.credits_used)


async def overdue(session: AsyncSession, grace_seconds: float) -> list[Any]:
    """Unfinished jobs (`job_id`, `status`) whose deadline passed more than `grace_seconds`
    ago."""
    return list((await session.execute(_OVERDUE, {"grace": grace_seconds})).all())


async def stranded(session: AsyncSession, stale_seconds: float) -> list[uuid.UUID]:
    """Unfinished jobs nobody is following: untouched for a while, with no task for them."""
    return list((await session.execute(_STRANDED, {"stale": stale_seconds})).scalars())


async def unfinished_among(session: AsyncSession, job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    return set((await session.execute(_UNFINISHED_AMONG, {"ids": job_ids})).scalars())


async def reassign_owner(session: AsyncSession, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    """A merged guest's videos become the account's."""
    await session.execute(
        update(VideoJob).where(VideoJob.user_id == from_user).values(user_id=to_user)
    )


async def delete_owned(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """The storage keys of a user's videos and thumbnails, for the caller to remove once the
    account's deletion has committed (the rows themselves go with the user: ON DELETE
    CASCADE)."""
    rows = await session.execute(_MEDIA_OF_USER, {"user_id": user_id})
    return [key for row in rows for key in row if key]
