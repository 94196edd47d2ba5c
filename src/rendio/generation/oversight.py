"""Jobs as an operator sees them: a refund by hand, a user's recent jobs (with the provider's
raw failure text, which users never see), and the generation statistics of a time window."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation.jobs import UNFINISHED, JobStatus, refund_transaction_id
from rendio.ledger import service as ledger
from rendio.ledger.service import DuplicateLedgerEntry, Reason
from rendio.platform.errors import NotFound

_LOCK = text(
    "SELECT user_id, status, credits_used FROM video_jobs WHERE job_id = :job_id FOR UPDATE"
)
_RECENT = text(
    "SELECT job_id, status, progress, model_id, provider, provider_job_id, credits_used, "
    "error_code, error_message, created_at, completed_at, deleted_at FROM video_jobs "
    "WHERE user_id = :user_id ORDER BY created_at DESC, job_id DESC LIMIT :limit"
)
_BY_STATUS = text(
    "SELECT provider, status, count(*) AS n FROM video_jobs WHERE created_at >= :since "
    "GROUP BY provider, status"
)
_DURATIONS = text(
    "SELECT avg(seconds) AS average, "
    "percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95 FROM ("
    "  SELECT EXTRACT(EPOCH FROM completed_at - created_at) AS seconds FROM video_jobs"
    "  WHERE created_at >= :since AND status = 'completed') done"
)
_FAILURES = text(
    "SELECT provider, error_code, count(*) AS n FROM video_jobs "
    "WHERE created_at >= :since AND status = 'failed' GROUP BY provider, error_code"
)


class NotRefundable(Exception):
    """Why a job cannot be refunded by hand (safe to show the operator)."""


@dataclass(frozen=True)
class RefundedJob:
    user_id: uuid.UUID
    amount: int
    balance_before: int
    balance_after: int


async def refund_by_hand(
    session: AsyncSession, job_id: uuid.UUID, details: dict[str, Any]
) -> RefundedJob:
    """Give back what a completed job cost: once per job, ever, whoever refunds it (the refund
    shares its ledger transaction id with the automatic refund of a failed job).

    A job still running is refused (a failure refunds it by itself; refunding it now would
    make that refund collide), and so is a failed one (already refunded) and a free one.
    """
    row = (await session.execute(_LOCK, {"job_id": job_id})).one_or_none()
    if row is None:
        raise NotFound({"job_id": str(job_id)})
    if row.status in UNFINISHED:
        raise NotRefundable("the job is still running; if it fails it is refunded automatically")
    if row.credits_used == 0:
        raise NotRefundable("the job cost nothing")
    transaction_id = refund_transaction_id(job_id)
    if await ledger.written(session, transaction_id):
        raise NotRefundable("the job was already refunded")
    try:
        after = await ledger.add(
            session,
            row.user_id,
            row.credits_used,
            reason=Reason.REFUND,
            transaction_id=transaction_id,
            job_id=job_id,
            details=details,
        )
    except DuplicateLedgerEntry:
        raise NotRefundable("the job was already refunded") from None
    return RefundedJob(row.user_id, row.credits_used, after - row.credits_used, after)


async def recent_of_user(session: AsyncSession, user_id: uuid.UUID, limit: int) -> list[Any]:
    """The user's latest jobs, deleted ones included, newest first."""
    return list(await session.execute(_RECENT, {"user_id": user_id, "limit": limit}))


@dataclass(frozen=True)
class GenerationStats:
    # provider → status → jobs created in the window
    by_provider: dict[str, dict[str, int]]
    # provider → error code → failed jobs
    failures: dict[str, dict[str, int]]
    average_seconds: float | None
    p95_seconds: float | None

    def by_status(self) -> dict[str, int]:
        totals = {status.value: 0 for status in JobStatus}
        for counts in self.by_provider.values():
            for status, n in counts.items():
                totals[status] += n
        return totals

    def success_rate(self) -> float | None:
        totals = self.by_status()
        ended = totals[JobStatus.COMPLETED] + totals[JobStatus.FAILED]
        return round(totals[JobStatus.COMPLETED] / ended, 4) if ended else None


async def stats_since(session: AsyncSession, since: datetime) -> GenerationStats:
    """Jobs created since `since`: counts, failures, and how long completed ones took."""
    by_provider: dict[str, dict[str, int]] = {}
    for row in await session.execute(_BY_STATUS, {"since": since}):
        by_provider.setdefault(row.provider, {})[row.status] = int(row.n)
    failures: dict[str, dict[str, int]] = {}
    for row in await session.execute(_FAILURES, {"since": since}):
        failures.setdefault(row.provider, {})[row.error_code or "unknown"] = int(row.n)
    durations = (await session.execute(_DURATIONS, {"since": since})).one()
    return GenerationStats(
        by_provider,
        failures,
        _seconds(durations.average),
        _seconds(durations.p95),
    )


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
