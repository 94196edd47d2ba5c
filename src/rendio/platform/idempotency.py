"""Idempotency-Key for POST endpoints that spend money (IETF draft, Stripe's rules).

The key is claimed, checked and answered inside the request's one transaction:
* a transaction-scoped advisory lock on (user, key) is *tried*: if another request holds it,
  that request is in flight → 409 ERR_4008 (never a wait, never a second charge);
* a stored answer for the key is replayed when the request's fingerprint matches, else
  422 ERR_4007; keys older than 24 h count as new;
* the answer is stored in the same transaction as the work, so a request that rolls back
  (bad input, not enough credits, a crash) leaves the key free. A holder that dies frees the
  lock with its connection; one that hangs is cut off by the connection's
  `idle_in_transaction_session_timeout`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import procrastinate
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.platform.errors import (
    IdempotencyInProgress,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
)

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAY_HEADER = "X-Idempotent-Replay"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
# `openapi_extra=` of an endpoint that refuses a request without a key (ERR_4009, not the
# ERR_4013 a required FastAPI header would give): the header, documented as required.
REQUIRED_HEADER: dict[str, Any] = {
    "parameters": [
        {
            "name": HEADER,
            "in": "header",
            "required": True,
            "description": "A key of your choosing, new for each new request (a UUID will "
            "do); a retry with the same key and body answers the first result without a "
            "second charge. Kept 24 hours.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": _KEY.pattern},
        }
    ]
}
_TRY_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:lock, 0))")
_LOOKUP = text(
    "SELECT id, request_fingerprint, status_code, response_body, expires_at > now() AS live "
    "FROM idempotency_log WHERE user_id = :user_id AND idempotency_key = :key"
)
_FORGET = text("DELETE FROM idempotency_log WHERE id = :id")
_STORE = text(
    "INSERT INTO idempotency_log (user_id, idempotency_key, operation, request_fingerprint, "
    "status_code, response_body, job_id, expires_at) VALUES (:user_id, :key, :operation, "
    ":fingerprint, :status, CAST(:body AS jsonb), :job_id, now() + interval '24 hours')"
)


@dataclass(frozen=True)
class StoredAnswer:
    status_code: int
    body: dict[str, Any]


def parse_key(value: str | None) -> str:
    if value is None or not _KEY.match(value):
        raise IdempotencyKeyInvalid({"header": HEADER, "max_length": 255})
    return value


def fingerprint(method: str, path: str, body: Any) -> str:
    """SHA-256 of method, path and the body as canonical JSON (key order and spacing aside)."""
    # ensure_ascii: a lone surrogate in the body must not make hashing fail.
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method}\n{path}\n{canonical}".encode()).hexdigest()


async def claim(
    session: AsyncSession, user_id: uuid.UUID, key: str, request_fingerprint: str
) -> StoredAnswer | None:
    """Hold the key for this transaction; return the stored answer if there is one."""
    locked = (
        await session.execute(_TRY_LOCK, {"lock": f"idempotency:{user_id}:{key}"})
    ).scalar_one()
    if not locked:
        raise IdempotencyInProgress({"header": HEADER})
    row = (await session.execute(_LOOKUP, {"user_id": user_id, "key": key})).one_or_none()
    if row is None:
        return None
    if not row.live:
        await session.execute(_FORGET, {"id": row.id})
        return None
    if row.request_fingerprint != request_fingerprint:
        raise IdempotencyKeyReused({"header": HEADER})
    return StoredAnswer(status_code=row.status_code, body=row.response_body)


async def remember(
    session: AsyncSession,
    user_id: uuid.UUID,
    key: str,
    *,
    operation: str,
    request_fingerprint: str,
    answer: StoredAnswer,
    job_id: uuid.UUID | None,
) -> None:
    await session.execute(
        _STORE,
        {
            "user_id": user_id,
            "key": key,
            "operation": operation,
            "fingerprint": request_fingerprint,
            "status": answer.status_code,
            "body": json.dumps(answer.body),
            "job_id": job_id,
        },
    )


# Run on procrastinate's own connection (a periodic task has no request session).
_PURGE = (
    "WITH gone AS (DELETE FROM idempotency_log WHERE expires_at < now() RETURNING 1) "
    "SELECT count(*) AS n FROM gone"
)


async def purge_expired(context: procrastinate.JobContext, timestamp: int) -> int:
    """Periodic: keys older than their 24 h window count as new again (Stripe's rule)."""
    rows = await context.app.connector.execute_query_all_async(_PURGE)
    purged = int(rows[0]["n"])
    log.info("idempotency_keys_purged", count=purged, scheduled_at=timestamp)
    return purged
