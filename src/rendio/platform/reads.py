"""Lean single-statement reads for the calls every request makes (the session check, a job's
status): asyncpg on a small pool of its own.

Measured on the bench machine (bench/statement_cost.py): one such read costs ~0.05 ms of the
API's CPU and one round trip. The same read through psycopg costs ~0.1 ms (each wait adds and
removes the socket from the event loop: two more system calls per statement), through an
SQLAlchemy session ~0.7 ms (~0.9 ms loading an ORM entity) and three round trips (BEGIN, the
statement, COMMIT). A read here sees every transaction committed before it, so it is as
current as a read inside the request's transaction would have been; what must be consistent
with a write (a debit and its ledger row) still goes through the request's session.

Statements are prepared once per connection (asyncpg's statement cache); behind PgBouncer in
transaction mode that needs `max_prepared_statements` (PgBouncer ≥ 1.21, docs/scaling.md).
"""

from __future__ import annotations

import json
import select
from typing import Any

import asyncpg
import psycopg
from psycopg.pq import ConnStatus

# A read waits this long for its answer and a new connection this long to connect (the
# database is away: fail fast rather than hold the request). Waiting for a free connection is
# bounded by these too (each holder lets go within them), so it carries no timer of its own:
# asyncpg's `acquire(timeout=…)` costs ~20 µs a request.
WAIT_SECONDS = 5
CONNECT_SECONDS = 5


class ReadFailed(Exception):
    """The database could not answer a lean read (away, restarting, refusing): the request is
    answered as any other database failure."""


def closed_by_server(pgconn: psycopg.pq.abc.PGconn) -> bool:
    """Whether an idle psycopg connection's server went away (a restart, a failover): an idle
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


class _Connection(asyncpg.Connection):
    def get_reset_query(self) -> str:
        """Nothing to reset: these connections only ever run single read statements, so
        asyncpg's reset on every release (four statements) would only cost a round trip."""
        return ""


async def _set_codecs(connection: asyncpg.Connection) -> None:
    """JSON columns decoded as psycopg decodes them (asyncpg leaves them as text)."""
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


# What a connection the server closed (a restart, a failover) raises when it is next used.
_LOST = (asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError)


class Reads:
    def __init__(self, database_url: str, *, size: int) -> None:
        self._url = database_url
        self._size = size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = asyncpg.create_pool(
            self._url,
            min_size=0,  # the API can start (and report not-ready) while the database is away
            max_size=self._size,
            connection_class=_Connection,
            init=_set_codecs,
            timeout=CONNECT_SECONDS,
            command_timeout=WAIT_SECONDS,
        )
        await self._pool  # with min_size=0 this connects nothing yet

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def one(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        """The first row of `query` (asyncpg placeholders: `$1`), or None. A connection the
        server closed is dropped and the read made again on another, each in turn (after a
        database restart every idle one is), so the first request after a restart is served,
        not failed; a read is safe to make twice."""
        if self._pool is None:
            raise ReadFailed("the reads are not open")
        for _ in range(self._size + 1):
            try:
                async with self._pool.acquire() as connection:
                    row = await connection.fetchrow(query, *params)
                    return None if row is None else dict(row)
            except _LOST:
                continue
            except (TimeoutError, OSError, asyncpg.PostgresError) as error:
                raise ReadFailed(type(error).__name__) from error
        raise ReadFailed("no live connection to the database")
