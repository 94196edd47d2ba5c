"""Database access: the declarative base, the async engine and the per-request session.

Services receive an `AsyncSession` and never commit; the request dependency (or a worker task)
commits once at the end or rolls back on any error, so a debit and the row it pays for always
land together.
"""

from __future__ import annotations

import select
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from psycopg.pq import ConnStatus
from sqlalchemy import Engine, MetaData, NullPool, event, func
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, SessionTransaction, mapped_column
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.types import DateTime

from rendio.platform.services import CoreServices, services_of

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


IDLE_TX_TIMEOUT_MS = 60_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())


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


def sqlalchemy_url(url: str) -> str:
    """Any postgres URL → the psycopg 3 async dialect SQLAlchemy needs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("only PostgreSQL URLs are supported")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The same URL in the plain libpq form (for psycopg and procrastinate directly)."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def sync_engine(url: str) -> Engine:
    """A pool-less synchronous engine for one-shot work: migrations, CLI commands, audits."""
    return create_sync_engine(sqlalchemy_url(url), poolclass=NullPool)


def _drop_stale_connections(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """On checkout: a pooled connection whose server went away (a restart, a failover) is
    replaced before the request uses it, instead of failing the request.

    `closed_by_server` asks the socket without a round trip, unlike `pool_pre_ping`. Raising
    DisconnectionError makes the pool drop this connection and check out another (each is
    judged the same way, so one stale connection does not reset the healthy ones).
    """
    if closed_by_server(dbapi_connection.driver_connection.pgconn):
        raise DisconnectionError("the database closed this connection")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        # A transaction left open (a hung request) is cut off, freeing its locks, among them
        # an Idempotency-Key's.
        connect_args={"options": f"-c idle_in_transaction_session_timeout={IDLE_TX_TIMEOUT_MS}"},
    )
    event.listen(engine.sync_engine, "checkout", _drop_stale_connections)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, rolled back on error."""
    async with services_of(request.app.state, CoreServices).sessions() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


_AFTER_COMMIT = "rendio.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Run `callback` when the session's transaction commits, and never if it rolls back: for
    counters that must count what happened, not what was attempted."""
    session.sync_session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@event.listens_for(OrmSession, "after_commit")
def _run_after_commit(session: OrmSession) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, ()):
        callback()


@event.listens_for(OrmSession, "after_transaction_end")
def _forget_uncommitted(session: OrmSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_AFTER_COMMIT, None)


# scope="function": commit before the response is sent, so a 2xx always means "stored".
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]
