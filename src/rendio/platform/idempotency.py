"""Idempotency-Key for POST endpoints that spend money (IETF draft, Stripe's rules).

The key is claimed, checked and answered inside the one statement that does the work (its
steps are CTEs: `CLAIM_SQL`, the work, `store_after`), which is its own transaction:
* a transaction-scoped advisory lock on (user, key) is *tried*: if another request holds it,
  that request is in flight → 409 ERR_4008 (never a wait, never a second charge);
* a stored answer for the key is replayed when the request's fingerprint matches, else
  422 ERR_4007; keys older than 24 h count as new;
* the answer is stored by the same statement as the work, so one that fails (not enough
  credits, a crash) leaves the key free. Both steps are the SQL function of migration 0014:
  its read must see an answer committed just before the lock was taken, which a plain
  statement's snapshot (taken before the lock) would not.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import procrastinate
import structlog

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
# A CTE of the caller's statement: one row, whose `outcome` is a `Claim`.
CLAIM_SQL = (
    "SELECT outcome, status_code, response_body "
    "FROM rendio_claim_idempotency_key(:user_id, :key, :fingerprint)"
)
_STORE_AFTER = (
    "INSERT INTO idempotency_log (user_id, idempotency_key, operation, request_fingerprint, "
    "status_code, response_body, job_id, expires_at) SELECT :user_id, :key, :operation, "
    ":fingerprint, :status, {body}, :job_id, now() + interval '24 hours' FROM {source}"
)


class Claim(StrEnum):
    NEW = "new"
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"
    REUSED = "reused"


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


def store_after(source: str, body: str) -> str:
    """SQL storing the answer `body` (an SQL jsonb expression) once per row of `source` (the
    work's CTE: no row, no answer kept), taking `claim_parameters`."""
    return _STORE_AFTER.format(source=source, body=body)


def claim_parameters(
    user_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    *,
    operation: str,
    status_code: int = 200,
) -> dict[str, Any]:
    """`CLAIM_SQL`'s and `store_after`'s parameters but the work's `job_id`."""
    return {
        "user_id": user_id,
        "key": key,
        "fingerprint": request_fingerprint,
        "operation": operation,
        "status": status_code,
    }


def settle(claim: str, status_code: int | None, body: Any) -> StoredAnswer | None:
    """What the claim decided: the stored answer to replay, None for a new request, or the
    error of a key in flight (409) or reused with another request (422)."""
    if claim == Claim.IN_PROGRESS:
        raise IdempotencyInProgress({"header": HEADER})
    if claim == Claim.REUSED:
        raise IdempotencyKeyReused({"header": HEADER})
    if claim == Claim.REPLAY:
        assert status_code is not None  # the function returns both with a replay
        return StoredAnswer(status_code=status_code, body=body)
    return None


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
