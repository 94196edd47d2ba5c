"""The background worker: procrastinate running every task (`tasks.py`) with the process's one
services object. Runs inside `rendio serve` or alone as `rendio worker`; any number of them
share one database."""

from __future__ import annotations

import asyncio

import procrastinate
import structlog

from rendio.services import Services

log = structlog.get_logger("rendio.worker")
_MAX_RESTART_BACKOFF = 30.0


async def run_worker(
    queue: procrastinate.App, services: Services, *, install_signal_handlers: bool
) -> None:
    """Run the worker until stopped; if it dies (the database away long enough for
    procrastinate's listener or heartbeat to give up), start it again after a backoff, so the
    sweeper and the jobs are never left without one."""
    settings = services.settings
    backoff = 1.0
    while True:
        try:
            await queue.run_worker_async(
                concurrency=settings.worker_concurrency,
                additional_context={"services": services},
                # Heartbeats three times per timeout, so one late beat is not a death.
                update_heartbeat_interval=settings.worker_stalled_after / 3,
                stalled_worker_timeout=settings.worker_stalled_after,
                install_signal_handlers=install_signal_handlers,
            )
            return  # stopped on purpose (a signal)
        except Exception as error:
            log.error("worker_died", error=repr(error), restart_in=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_RESTART_BACKOFF)
