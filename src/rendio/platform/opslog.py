"""What the API tells its operators through the database: an `error_log` row for every 5xx it
answers, and per-minute counts of every error code and every rate-limit refusal (summed by
`admin-stats` across all replicas).

Each error answer is noted in memory and written by one background task every few seconds,
never by the request: a flood of refused requests then costs the database one upsert per
minute and label, not a write each, and an error answered because the database is down is
kept until it is back. Memory is bounded: at most `max_rows` unwritten rows (the oldest are
dropped, and counted), and the counts have one key per minute, kind and code or policy.

Failures of jobs are written by the worker in the transaction that fails the job
(`record_failure`), so a provider's error is logged exactly when the job's refund is.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import Counter as PromCounter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import Scope

from rendio.platform import i18n, metrics
from rendio.platform.db import after_commit
from rendio.platform.errors import HTTP_STATUS, ErrorCode
from rendio.platform.http import Problem

log = structlog.get_logger(__name__)
DROPPED = PromCounter(
    "rendio_error_log_dropped_total", "error_log rows dropped because the buffer was full"
)

ERROR = "error"
RATE_LIMIT = "rate_limit"
_MESSAGE_LIMIT = 1000
# Answers that shed load or report a part down: counted, but not worth a row each.
_NOT_LOGGED = {ErrorCode.UNAVAILABLE}

_INSERT_ERROR = text(
    "INSERT INTO error_log (source, code, message, request_id, user_id, job_id, provider, "
    "details) SELECT :source, :code, :message, :request_id, "
    "(SELECT id FROM users WHERE id = CAST(:user_id AS uuid)), "
    "(SELECT job_id FROM video_jobs WHERE job_id = CAST(:job_id AS uuid)), "
    ":provider, CAST(:details AS jsonb)"
)
_COUNTS_SINCE = text(
    "SELECT kind, label, SUM(count) AS n FROM ops_counts WHERE minute >= :since "
    "GROUP BY kind, label"
)
_ADD_COUNT = text(
    "INSERT INTO ops_counts (minute, kind, label, count) VALUES (:minute, :kind, :label, :count) "
    "ON CONFLICT (minute, kind, label) DO UPDATE SET count = ops_counts.count + EXCLUDED.count"
)


def _minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0)


def _row(
    *,
    source: str,
    code: ErrorCode,
    message: str,
    request_id: str | None = None,
    user_id: uuid.UUID | str | None = None,
    job_id: uuid.UUID | str | None = None,
    provider: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "source": source,
        "code": code.value,
        "message": message.replace("\x00", "")[:_MESSAGE_LIMIT],
        "request_id": request_id,
        "user_id": str(user_id) if user_id is not None else None,
        "job_id": str(job_id) if job_id is not None else None,
        "provider": provider,
        "details": json.dumps(details or {}, default=str),
    }


async def record_failure(
    session: AsyncSession,
    *,
    code: ErrorCode,
    message: str,
    job_id: uuid.UUID,
    user_id: uuid.UUID | None,
    provider: str,
) -> None:
    """One error_log row for a failed job, in the caller's transaction. `message` is the
    provider's own reason (or ours); it never holds a credential."""
    after_commit(session, lambda: metrics.ERRORS.labels(code.value).inc())
    row = _row(
        source="worker",
        code=code,
        message=message,
        user_id=user_id,
        job_id=job_id,
        provider=provider,
    )
    await session.execute(_INSERT_ERROR, row)


class OpsLog:
    """The API process's buffer of error rows and counts (see the module docstring)."""

    def __init__(self, *, max_rows: int = 1000) -> None:
        self._rows: deque[dict[str, Any]] = deque()
        self._max_rows = max_rows
        self._counts: Counter[tuple[datetime, str, str]] = Counter()

    def observe(self, scope: Scope, problem: Problem) -> None:
        """Called for every error answer the HTTP layer renders."""
        code = problem.code
        metrics.ERRORS.labels(code.value).inc()
        minute = _minute(datetime.now(UTC))
        self._counts[(minute, ERROR, code.value)] += 1
        if code is ErrorCode.RATE_LIMITED:
            self._counts[(minute, RATE_LIMIT, str(problem.details.get("policy", "unknown")))] += 1
        if HTTP_STATUS[code] < 500 or code in _NOT_LOGGED:
            return
        state = scope.get("state", {})
        details = {"method": scope.get("method"), "path": scope.get("path")}
        if "error" in state:
            details["error"] = state["error"]
        self._add_rows(
            [
                _row(
                    source="api",
                    code=code,
                    message=i18n.message(code.value, "en", problem.details),
                    request_id=state.get("request_id"),
                    user_id=state.get("user_id"),
                    details=details | problem.details,
                )
            ]
        )

    def _add_rows(self, rows: list[dict[str, Any]]) -> None:
        self._rows.extend(rows)
        while len(self._rows) > self._max_rows:
            self._rows.popleft()
            DROPPED.inc()

    async def flush(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Write what has been noted; on failure keep it for the next attempt."""
        rows, counts = list(self._rows), self._counts
        if not rows and not counts:
            return
        self._rows.clear()
        self._counts = Counter()
        try:
            async with sessions.begin() as session:
                if rows:
                    await session.execute(_INSERT_ERROR, rows)
                if counts:
                    await session.execute(
                        _ADD_COUNT,
                        [
                            {"minute": minute, "kind": kind, "label": label, "count": count}
                            for (minute, kind, label), count in sorted(counts.items())
                        ],
                    )
        except Exception:
            self._rows.extendleft(reversed(rows))
            self._add_rows([])
            self._counts.update(counts)
            raise

    async def run(self, sessions: async_sessionmaker[AsyncSession], interval: float) -> None:
        """Flush every `interval` seconds until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(interval)
                await self._flush_logged(sessions)
        finally:
            await self._flush_logged(sessions)

    async def _flush_logged(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        try:
            await self.flush(sessions)
        except Exception as error:
            log.warning("ops_log_flush_failed", error=repr(error))


async def counts_since(session: AsyncSession, since: datetime) -> dict[str, dict[str, int]]:
    """kind → label → count, summed over every replica's minutes since `since` (what is still
    in a replica's memory, at most one flush interval, is not included)."""
    counts: dict[str, dict[str, int]] = {ERROR: {}, RATE_LIMIT: {}}
    for row in await session.execute(_COUNTS_SINCE, {"since": _minute(since)}):
        counts.setdefault(row.kind, {})[row.label] = int(row.n)
    return counts
