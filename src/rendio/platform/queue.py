"""The durable job queue: procrastinate on the service's own PostgreSQL.

No extra server to run; workers claim jobs with `FOR UPDATE SKIP LOCKED`, so any number of
`rendio worker` processes (or the one inside `rendio serve`) share the work. What runs on it is
not known here: the composition root (`rendio/tasks.py`) hands `create_queue` a function that
registers every domain's tasks (plain registration: procrastinate blueprints rename their tasks
when added, so one blueprint cannot serve two apps in a process).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import procrastinate
from procrastinate.schema import SchemaManager
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.platform.db import libpq_url

Registration = Callable[[procrastinate.App], None]


_QUEUE_SCHEMA_EXISTS = text("SELECT to_regclass('procrastinate_jobs')")


def ensure_queue_schema(conn: Connection) -> None:
    """Apply procrastinate's schema the first time; later versions bring their own migrations,
    which is why the dependency is pinned to one minor release."""
    exists = conn.execute(_QUEUE_SCHEMA_EXISTS).scalar()
    if exists is None:
        conn.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def create_queue(url: str, register: Registration) -> procrastinate.App:
    # min_size=0: the API can start (and report not-ready) while the database is away.
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(url), min_size=0, max_size=4)
    app = procrastinate.App(connector=connector)
    register(app)
    return app


_DEFER_SQL = (
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority, :lock, "
    ":queueing_lock, CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1]) AS ids"
)
_DEFER = text(_DEFER_SQL)


def defer_after(source: str) -> str:
    """SQL queueing a task once per row of `source` (a CTE of the caller's statement), taking
    `defer_parameters`. As a CTE it runs only if the statement reads it."""
    return f"{_DEFER_SQL} FROM {source}"


def defer_parameters(
    task_name: str,
    args: dict[str, Any],
    *,
    lock: str | None = None,
    queue: str = "default",
    priority: int = 0,
    queueing_lock: str | None = None,
) -> dict[str, Any]:
    """The defer's parameters, `args` as an object (a lean statement, platform/reads.py,
    encodes it; a session takes it as JSON text)."""
    return {
        "queue": queue,
        "task": task_name,
        "priority": priority,
        "lock": lock,
        "queueing_lock": queueing_lock,
        "args": args,
    }


async def defer_in_transaction(
    session: AsyncSession,
    task_name: str,
    args: dict[str, Any],
    *,
    lock: str | None = None,
    queue: str = "default",
    priority: int = 0,
    queueing_lock: str | None = None,
) -> bool:
    """Queue a task inside the caller's transaction: if it rolls back, the task never existed.

    (procrastinate's own `defer` uses its own connection, which would let work escape a
    rolled-back request.) Workers are woken by the queue's NOTIFY when the transaction commits.
    With a `queueing_lock`, a task already waiting under it means this one is not queued
    (False); a savepoint keeps that refusal from aborting the caller's transaction.
    """
    params = defer_parameters(
        task_name, args, lock=lock, queue=queue, priority=priority, queueing_lock=queueing_lock
    ) | {"args": json.dumps(args)}
    if queueing_lock is None:
        await session.execute(_DEFER, params)
        return True
    try:
        async with session.begin_nested():
            await session.execute(_DEFER, params)
    except IntegrityError:
        return False
    return True
