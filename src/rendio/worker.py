"""The background worker: procrastinate running every task (`tasks.py`) with the process's one
services object. Runs inside `rendio serve` or alone as `rendio worker`; any number of them
share one database.

procrastinate's worker stops by itself — returning normally — when one of its side tasks (the
LISTEN connection, the heartbeat) fails, which is what a database outage does; it raises when
it cannot reach the database for longer than its pool's timeout. Either way `run_worker` starts
it again after a backoff, for as long as it takes: a database outage of any length ends with a
working worker. Only a worker that keeps failing for another reason (a bug, not the database)
is given up on, with `WorkerGaveUp`: `rendio worker` then exits non-zero for its supervisor to
see, and under `rendio serve` `/ready` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

import procrastinate
import procrastinate.exceptions
import procrastinate.worker
import psycopg
import structlog

from rendio.services import Services

log = structlog.get_logger("rendio.worker")
COMPONENT = "worker"
_MAX_BACKOFF = 30.0
_HEALTHY_RUN_SECONDS = 60.0  # a run this long resets the backoff and the failure count
_MAX_UNEXPECTED_FAILURES = 5  # in a row, each within a minute of starting
_STOP_RETRY_SECONDS = 0.5


class WorkerGaveUp(Exception):
    """The worker kept failing for a reason other than the database; the message says why."""


def _database_trouble(error: BaseException) -> bool:
    """Whether an error (or what caused it) is the database being away or unreachable."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(
            seen, procrastinate.exceptions.ConnectorException | psycopg.OperationalError | OSError
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def run_worker(queue: procrastinate.App, services: Services) -> None:
    """Run the worker until cancelled, starting it again whenever it stops by itself."""
    settings = services.settings
    loop = asyncio.get_running_loop()
    backoff = 1.0
    unexpected = 0
    while True:
        services.health.up(COMPONENT)
        started = loop.time()
        try:
            await run_until_stopped(
                new_worker(
                    queue,
                    concurrency=settings.worker_concurrency,
                    additional_context={"services": services},
                    # Heartbeats three times per timeout, so one late beat is not a death.
                    update_heartbeat_interval=settings.worker_stalled_after / 3,
                    stalled_worker_timeout=settings.worker_stalled_after,
                    # Stopping is the caller's business (cancel this coroutine), so a return
                    # is always procrastinate giving up on a failed side task.
                    install_signal_handlers=False,
                )
            )
            reason, transient = "a side task failed (listener or heartbeat)", True
        except Exception as error:
            reason, transient = repr(error), _database_trouble(error)
        if loop.time() - started >= _HEALTHY_RUN_SECONDS:
            backoff, unexpected = 1.0, 0
        if not transient:
            unexpected += 1
            if unexpected >= _MAX_UNEXPECTED_FAILURES:
                services.health.down(COMPONENT, f"gave up after {unexpected} failures: {reason}")
                log.error("worker_gave_up", error=reason, failures=unexpected)
                raise WorkerGaveUp(reason)
        log.error("worker_died", error=reason, restart_in=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF)


class Stoppable(Protocol):
    """What `run_until_stopped` needs of procrastinate's worker."""

    worker_id: int | None  # set once the worker has registered (before it takes any job)

    async def run(self) -> None: ...

    def stop(self) -> None: ...


def new_worker(queue: procrastinate.App, **options: Any) -> Stoppable:
    """procrastinate's worker for `queue` (with the app's worker defaults, as
    `App.run_worker_async` makes it), made here so that `run_until_stopped` can ask it to stop.
    (That method also imports the app's `import_paths`; tasks here are registered by
    `tasks.registration`, so there are none.)"""
    return procrastinate.worker.Worker(app=queue, **{**queue.worker_defaults, **options})


async def run_until_stopped(worker: Stoppable) -> None:
    """Run `worker` until it stops by itself; when cancelled, stop it gracefully (its running
    jobs finish) and then raise the cancellation.

    The stop is asked with `worker.stop()` until the worker has stopped, not by cancelling its
    task: psycopg_pool swallows a cancellation that arrives as it hands over a connection (seen
    when a stop came during the worker's first query), and the worker then waited forever. The
    ask is repeated because the worker clears a stop asked before it started. A worker that
    has not registered yet has no job to finish, and may be stuck in its first query (the
    database away: 30 s of pool timeout), so it is also cancelled, again until it has stopped.
    """
    running = asyncio.create_task(worker.run(), name="procrastinate-worker")
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            worker.stop()
            if worker.worker_id is None:
                running.cancel()
            await asyncio.wait({running}, timeout=_STOP_RETRY_SECONDS)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            running.result()  # stopping anyway; a failed shutdown is not a death to report
        raise
