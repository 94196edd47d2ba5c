"""Lean single-statement reads for the calls every request makes (the session check, a job's
status): asyncpg connections, kept by `Reads` below.

Measured on the bench machine (bench/statement_cost.py, one read at a time): one such read
costs ~0.12 ms of the API's CPU and one round trip. The same read through psycopg's pool costs
~0.16 ms (each wait adds and removes the socket from the event loop: two more system calls per
statement), through an SQLAlchemy session ~0.6 ms (~0.8 ms loading an ORM entity) and three
round trips (BEGIN, the statement, COMMIT). A read here sees every transaction committed
before it, so it is as current as a read inside the request's transaction would have been;
what must be consistent with a write (a debit and its ledger row) still goes through the
request's session — or is one statement, which is its own transaction: generate-video's start
(claim, debit, ledger row, job, queue row, stored answer) is made here so, in one round trip.

Statements are prepared once per connection (asyncpg's statement cache); behind PgBouncer in
transaction mode that needs `max_prepared_statements` (PgBouncer ≥ 1.21, docs/scaling.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
from sqlalchemy import text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

# A read waits this long for a free connection and for its answer, and a new connection this
# long to connect (the database is away: fail fast rather than hold the request). The server
# ends a statement that runs longer itself: a connection given up on the client's side (a
# cancelled request) leaves its statement running, and the next read opens another connection.
WAIT_SECONDS = 5
CONNECT_SECONDS = 5


class ReadFailed(Exception):
    """The database could not answer a lean read (away, restarting, refusing): the request is
    answered as any other database failure."""


# libpq's own connection options that asyncpg does not know: it would send each to the server
# as a setting and be refused ("unrecognized configuration parameter"), so a URL written for
# psycopg (`?connect_timeout=10`) would fail every read. Its own timeouts stand in for them.
_LIBPQ_ONLY = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "client_encoding",
        "fallback_application_name",
        "channel_binding",
        "gssencmode",
        "gssdelegation",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "requirepeer",
        "require_auth",
        "load_balance_hosts",
        "hostaddr",
        "replication",
        "service",
    }
)


def asyncpg_dsn(url: str) -> str:
    """`url` (libpq form) without the options only libpq understands."""
    parts = urlsplit(url)
    kept = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _LIBPQ_ONLY
    ]
    return urlunsplit(parts._replace(query=urlencode(kept)))


async def _connect(url: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(
        url,
        timeout=CONNECT_SECONDS,
        # The server's limit first (a clean error, the connection still usable); the client's a
        # second later, for a server that no longer answers at all.
        command_timeout=WAIT_SECONDS + 1,
        server_settings={"statement_timeout": f"{WAIT_SECONDS}s"},
    )
    try:
        # JSON columns decoded as psycopg decodes them (asyncpg leaves them as text).
        for kind in ("json", "jsonb"):
            await connection.set_type_codec(
                kind, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
    except BaseException:
        connection.terminate()
        raise
    return connection


_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]  # (SQLAlchemy's, untyped)


@dataclass(frozen=True)
class Statement:
    """A statement written with named placeholders (`:name`, as SQLAlchemy's `text` takes
    them), turned once into asyncpg's numbered ones: so a statement composed of SQL that other
    modules own (written for their sessions) can be made here too."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, named: str) -> Statement:
        compiled = text(named).compile(dialect=_ASYNCPG)
        return cls(compiled.string, tuple(compiled.positiontup or ()))

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[name] for name in self.names)


# What a connection the server closed (a restart, a failover) raises when it is next used.
_GONE = (asyncpg.ConnectionDoesNotExistError, ConnectionError)


class Reads:
    """At most `size` connections, made when first needed and kept while they live.

    Not asyncpg's pool: its release runs each connection's reset under a timer inside a new
    task (`asyncio.shield`), ~25 µs of the API's CPU per read — a tenth of a polled request.
    Here a read takes a slot (a semaphore), the warmest idle connection (or a new one), and
    gives both back. A connection whose read did not finish in step (cancelled, timed out on
    the client's side, its server gone) is closed rather than reused, so none is ever handed
    on mid-query; one whose statement the server refused is still in step and is kept.
    """

    def __init__(self, database_url: str, *, size: int) -> None:
        self._url = asyncpg_dsn(database_url)
        self._size = size
        self._slots = asyncio.Semaphore(size)
        self._idle: list[asyncpg.Connection] = []  # the last one used first
        self._closed = False

    async def open(self) -> None:
        """Nothing to connect yet: the API can start (and report not-ready) while the database
        is away. Opened again (a new event loop), it starts afresh."""
        self._drop_idle()
        self._slots = asyncio.Semaphore(self._size)
        self._closed = False

    async def aclose(self) -> None:
        self._closed = True
        self._drop_idle()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(RuntimeError):  # made in an event loop now closed
                connection.terminate()

    async def one(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        """The first row of `query` (asyncpg placeholders: `$1`), or None. A connection the
        server closed is dropped and the read made again on another, each in turn (after a
        database restart every idle one is), so the first request after a restart is served,
        not failed. So what is made here must be safe to make twice: a read, or generate-video's
        start (a first attempt that did commit is found by the retry's claim and replayed)."""
        for _ in range(self._size + 1):
            await self._take_slot()
            try:
                connection = await self._connection()
                try:
                    row = await connection.fetchrow(query, *params)
                except Exception as error:
                    if isinstance(error, _GONE) or connection.is_closed():
                        connection.terminate()
                        continue  # its server closed it: the read again, on another
                    if isinstance(error, asyncpg.PostgresError):
                        self._give_back(connection)  # the server's error: still in step
                    else:
                        connection.terminate()  # in an unknown state: never handed on
                    raise
                except BaseException:  # cancelled
                    connection.terminate()
                    raise
                self._give_back(connection)
                return None if row is None else dict(row)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                raise ReadFailed(type(error).__name__) from error
            finally:
                self._slots.release()
        raise ReadFailed("no live connection to the database")

    async def _take_slot(self) -> None:
        if self._closed:
            raise ReadFailed("the reads are closed")
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns without waiting
            return
        try:
            async with asyncio.timeout(WAIT_SECONDS):
                await self._slots.acquire()
        except TimeoutError:
            raise ReadFailed("no free connection") from None

    async def _connection(self) -> asyncpg.Connection:
        if self._closed:  # closed while this read waited for its slot
            raise ReadFailed("the reads are closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():  # the event loop saw its server close it
                return connection
        return await _connect(self._url)

    def _give_back(self, connection: asyncpg.Connection) -> None:
        if self._closed:
            connection.terminate()
        else:
            self._idle.append(connection)
