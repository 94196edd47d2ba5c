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

# A request waits this long for a connection (the database is away: fail fast rather than
# hold the request), and a new connection this long to connect.
WAIT_SECONDS = 5
CONNECT_SECONDS = 5


def closed_by_server(pgconn: psycopg.pq.abc.PGconn) -> bool:
    """Whether an idle connection's server went away (a restart, a failover): an idle
    connection has nothing to read unless its server closed it. One non-blocking `poll`, no
    round trip (and, unlike `select`, any file descriptor number)."""
    if pgconn.status != ConnStatus.OK:
        return True
    try:
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.OperationalError):
        return True


class Reads:
    def __init__(self, database_url: str, *, size: int) -> None:
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
            database_url,
            min_size=0,  # the API can start (and report not-ready) while the database is away
            max_size=size,
            open=False,
            timeout=WAIT_SECONDS,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": CONNECT_SECONDS,
            },
            connection_class=psycopg.AsyncConnection[DictRow],
        )
        self._size = size

    async def open(self) -> None:
        await self._pool.open()

    async def aclose(self) -> None:
        await self._pool.close()

    async def one(
        self, query: str | sql.Composed, params: tuple[Any, ...]
    ) -> dict[str, Any] | None:
        """The first row of `query` (psycopg placeholders: `%s`), or None. Connections the
        server closed are dropped at once, each in turn (after a database restart every idle
        one is), so the first request after a restart is served, not failed."""
        for _ in range(self._size + 1):
            connection = await self._pool.getconn()
            try:
                if closed_by_server(connection.pgconn):
                    await connection.close()  # the pool discards a closed connection
                    continue
                cursor = await connection.execute(query, params)
                return await cursor.fetchone()
            finally:
                await self._pool.putconn(connection)
        raise psycopg.OperationalError("no live connection to the database")
