"""The credits service: the only code that changes a balance.

Every movement is one SQL statement: a guarded `UPDATE users ... RETURNING` chained (in a CTE)
with the `INSERT INTO quota_log`, so the balance and its ledger row change together or not at
all, in one round trip, inside the caller's transaction (generate-video takes the same two
CTEs into its one statement: `debit_ctes`). The row lock the UPDATE takes serializes movements
per user, which is what makes `balance_after` a true running sum.

A ledger `transaction_id` is unique: writing the same one twice raises DuplicateLedgerEntry
and the statement changes nothing — the second lock behind every compare-and-swap refund. The
caller's transaction is then aborted and must roll back (no savepoint: it would cost two
more round trips on every movement to serve a case that only a lost race produces).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.platform.db import after_commit
from rendio.platform.errors import InsufficientCredits, NotFound

MOVED = Counter(
    "rendio_credits_moved_total", "Credits moved by committed ledger rows, by reason", ["reason"]
)

_BALANCE = text("SELECT credits_remaining, credits_total FROM users WHERE id = :id")
_WRITTEN = text("SELECT 1 FROM quota_log WHERE transaction_id = :transaction_id")
_RECENT = text(
    "SELECT id, job_id, change, reason, transaction_id, balance_after, details, created_at "
    "FROM quota_log WHERE user_id = :user_id ORDER BY id DESC LIMIT :limit"
)
# Credits moved since a time, by reason (the BRIN index on created_at keeps a recent window
# cheap however long the ledger grows).
_TOTALS = text(
    "SELECT reason, SUM(change) AS net, count(*) AS entries FROM quota_log "
    "WHERE created_at >= :since GROUP BY reason"
)


class Reason(StrEnum):
    INITIAL_GRANT = "initial_grant"
    GENERATION = "generation"
    REFUND = "refund"
    PURCHASE = "purchase"
    PURCHASE_REFUND = "purchase_refund"
    PURCHASE_RESTORED = "purchase_restored"
    ADMIN_ADJUST = "admin_adjust"
    ADMIN_REFUND = "admin_refund"
    MERGE_OUT = "merge_out"
    MERGE_IN = "merge_in"


class DuplicateLedgerEntry(Exception):
    """This ledger transaction id was already written; nothing changed."""


_LEDGER_INSERT = """
    INSERT INTO quota_log (user_id, job_id, change, reason, transaction_id, balance_after,
                           details)
    SELECT id, CAST(:job_id AS uuid), :change, :reason, :transaction_id, credits_remaining,
           CAST(:details AS jsonb)
    FROM moved
    RETURNING balance_after
"""

# The guarded debit and its ledger row as two CTEs, `moved` (the user's new balance, no row if
# it does not cover the cost or `when` is false) and `logged` (the ledger row's balance_after).
_DEBIT = """
    moved AS (
        UPDATE users
        SET credits_remaining = credits_remaining + :change, updated_at = now()
        WHERE id = :user_id AND credits_remaining + :change >= 0 AND ({when})
        RETURNING id, credits_remaining
    ), logged AS ({ledger_insert})
"""
# The user's balance, as a refused debit answers it (NULL: no such user).
AVAILABLE = "(SELECT credits_remaining FROM users WHERE id = :user_id)"


def debit_ctes(when: str = "true") -> str:
    """The debit as CTEs of a larger statement (generate-video's start): `moved` and `logged`,
    taking `debit_parameters`; nothing moves unless `when` (SQL) holds. The caller reads
    `(SELECT balance_after FROM logged)` and `AVAILABLE` and hands both to `debited`."""
    return _DEBIT.format(when=when, ledger_insert=_LEDGER_INSERT)


_DEDUCT = text(
    # Composed only from this module's constants; all values are bound parameters.
    f"""
    WITH {debit_ctes()}
    SELECT (SELECT balance_after FROM logged) AS balance, {AVAILABLE} AS available
    """  # noqa: S608
)

_ADD = text(
    f"""
    WITH moved AS (
        UPDATE users
        SET credits_remaining = credits_remaining + :change,
            credits_total = credits_total + :lifetime,
            updated_at = now()
        WHERE id = :user_id
        RETURNING id, credits_remaining
    ), logged AS ({_LEDGER_INSERT})
    SELECT (SELECT balance_after FROM logged) AS balance
    """  # noqa: S608
)


def _parameters(
    user_id: uuid.UUID,
    change: int,
    reason: Reason,
    transaction_id: str,
    job_id: uuid.UUID | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "job_id": job_id,
        "change": change,
        "reason": reason.value,
        "transaction_id": transaction_id,
        "details": json.dumps(details or {}),
    }


async def _execute(session: AsyncSession, statement: Any, params: dict[str, Any]) -> Any:
    try:
        return (await session.execute(statement, params)).one()
    except IntegrityError as error:
        if "uq_quota_log_transaction_id" in str(error.orig):
            raise DuplicateLedgerEntry(params["transaction_id"]) from None
        raise


async def deduct(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    *,
    reason: Reason,
    transaction_id: str,
    job_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
) -> int:
    """Take `amount` credits if the balance covers it; return the new balance.

    Raises InsufficientCredits (with required and available) and changes nothing otherwise.
    """
    if amount <= 0:
        raise ValueError("deduct amount must be positive")
    params = _parameters(user_id, -amount, reason, transaction_id, job_id, details)
    row = await _execute(session, _DEDUCT, params)
    balance = debited(user_id, amount, row.balance, row.available)
    after_commit(session, lambda: counted(reason, amount))
    return balance


def debit_parameters(
    user_id: uuid.UUID,
    amount: int,
    *,
    reason: Reason,
    transaction_id: str,
    job_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """`debit_ctes`' parameters for a lean statement (platform/reads.py: JSON as objects)."""
    if amount <= 0:
        raise ValueError("debit amount must be positive")
    return {**_parameters(user_id, -amount, reason, transaction_id, job_id, None), "details": {}}


def debited(user_id: uuid.UUID, amount: int, balance: int | None, available: int | None) -> int:
    """The new balance after a debit; InsufficientCredits (with required and available) if it
    was refused, NotFound if the user is gone."""
    if balance is not None:
        return int(balance)
    if available is None:
        raise NotFound({"user_id": str(user_id)})
    raise InsufficientCredits(required=amount, available=int(available))


async def add(
    session: AsyncSession,
    user_id: uuid.UUID,
    amount: int,
    *,
    reason: Reason,
    transaction_id: str,
    job_id: uuid.UUID | None = None,
    details: dict[str, Any] | None = None,
    lifetime: bool = False,
) -> int:
    """Give `amount` credits; return the new balance.

    `lifetime=True` also counts them in `credits_total` (grants and purchases do; a refund of
    a failed job gives back what was already counted, so it does not).
    """
    if amount <= 0:
        raise ValueError("add amount must be positive")
    params = _parameters(user_id, amount, reason, transaction_id, job_id, details)
    params["lifetime"] = amount if lifetime else 0
    row = await _execute(session, _ADD, params)
    if row.balance is None:
        raise NotFound({"user_id": str(user_id)})
    after_commit(session, lambda: counted(reason, amount))
    return int(row.balance)


def counted(reason: Reason, amount: int) -> None:
    """Count credits moved by a committed ledger row (the caller knows it committed)."""
    MOVED.labels(reason.value).inc(amount)


async def balance(session: AsyncSession, user_id: uuid.UUID) -> tuple[int, int]:
    """(credits_remaining, credits_total) for a user."""
    row = (
        await session.execute(
            _BALANCE,
            {"id": user_id},
        )
    ).one_or_none()
    if row is None:
        raise NotFound({"user_id": str(user_id)})
    return int(row.credits_remaining), int(row.credits_total)


async def written(session: AsyncSession, transaction_id: str) -> bool:
    """Whether a ledger row with this transaction id exists."""
    return (await session.execute(_WRITTEN, {"transaction_id": transaction_id})).first() is not None


async def recent(session: AsyncSession, user_id: uuid.UUID, limit: int) -> list[Any]:
    """The user's latest ledger rows, newest first."""
    return list(await session.execute(_RECENT, {"user_id": user_id, "limit": limit}))


async def totals_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """Net credits moved per reason since `since` (spending is negative)."""
    rows = await session.execute(_TOTALS, {"since": since})
    return {row.reason: int(row.net) for row in rows}
