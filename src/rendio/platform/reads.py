"""Lean single-statement reads for the calls every request makes (the session check, a job's
status): plain psycopg on a small pool of autocommit connections.

Measured on the bench machine (bench/statement_cost.py): one such read costs ~0.2 ms of the
API's CPU and one round trip, where the same statement through an SQLAlchemy session costs
~0.7 ms (~0.9 ms loading an ORM entity) and three round trips (BEGIN, the statement, COMMIT).
A read here sees every transaction committed before it, so it is as current as a read inside
the request's transaction would have been; what must be consistent with a write (a debit and
its ledger row) still goes through the request's session.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import ConnStatus
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


async def _usable(connection: psycopg.AsyncConnection[Any]) -> None:
    """On checkout: a connection whose server went away (a restart, a failover) is replaced
    before a request uses it. An idle connection has nothing to read unless the server closed
    it, so one non-blocking `select` tells, without a round trip."""
    pgconn = connection.pgconn
    if pgconn.status != ConnStatus.OK or select.select([pgconn.socket], [], [], 0)[0]:
        await connection.close()  # so the pool discards it rather than offering it again
        raise psycopg.OperationalError("the database closed this connection")


class Reads:
    def __init__(self, database_url: str, *, size: int) -> None:
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            database_url,
            min_size=0,  # the API can start (and report not-ready) while the database is away
            max_size=size,
            open=False,
            check=_usable,
            kwargs={"autocommit": True, "row_factory": dict_row},
            connection_class=psycopg.AsyncConnection[DictRow],
        )

    async def open(self) -> None:
        await self._pool.open()

    async def aclose(self) -> None:
        await self._pool.close()

    async def one(
        self, query: str | sql.Composed, params: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        """The first row of `query` (psycopg placeholders: `%s`), or None."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute(query, params)
            return await cursor.fetchone()
