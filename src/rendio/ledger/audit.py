"""The ledger invariant, checked from outside the service: `rendio credits verify` and tests.

For every user, `credits_remaining` equals the sum of their ledger changes, and each ledger
row's `balance_after` equals the running sum up to and including it (in id order, which is
the order the per-user row lock imposed).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

_BALANCE_MISMATCHES = text(
    """
    SELECT u.id AS user_id, u.credits_remaining, COALESCE(SUM(q.change), 0) AS ledger_sum
    FROM users u LEFT JOIN quota_log q ON q.user_id = u.id
    GROUP BY u.id
    HAVING u.credits_remaining <> COALESCE(SUM(q.change), 0)
    ORDER BY u.id
    """
)

_BROKEN_CHAINS = text(
    """
    SELECT user_id, id, balance_after, running
    FROM (
        SELECT user_id, id, balance_after,
               SUM(change) OVER (PARTITION BY user_id ORDER BY id) AS running
        FROM quota_log WHERE user_id IS NOT NULL
    ) chain
    WHERE balance_after <> running
    ORDER BY user_id, id
    """
)


@dataclass(frozen=True)
class Offence:
    user_id: str
    problem: str


def ledger_offences(conn: Connection) -> list[Offence]:
    offences = [
        Offence(
            str(row.user_id),
            f"balance {row.credits_remaining} but ledger sums to {row.ledger_sum}",
        )
        for row in conn.execute(_BALANCE_MISMATCHES)
    ]
    offences += [
        Offence(
            str(row.user_id),
            f"ledger row {row.id} says balance_after {row.balance_after}, running sum is "
            f"{row.running}",
        )
        for row in conn.execute(_BROKEN_CHAINS)
    ]
    return offences
