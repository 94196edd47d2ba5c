"""The background worker: procrastinate running the generation and maintenance tasks with
what they need (database sessions, provider adapters, storage). Runs inside `rendio serve`
or alone as `rendio worker`; any number of them share one database."""

from __future__ import annotations

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rendio.config import Settings
from rendio.generation.tasks import Runtime
from rendio.platform.storage import LocalStorage
from rendio.providers.registry import build_providers


def media_storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.data_dir / "media")


def build_runtime(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> Runtime:
    return Runtime(
        settings=settings,
        sessions=sessions,
        providers=build_providers(settings),
        storage=media_storage(settings),
    )


async def run_worker(
    queue: procrastinate.App, runtime: Runtime, *, install_signal_handlers: bool
) -> None:
    settings = runtime.settings
    await queue.run_worker_async(
        concurrency=settings.worker_concurrency,
        additional_context={"runtime": runtime},
        # Heartbeats three times per timeout, so one late beat does not look like a death.
        update_heartbeat_interval=settings.worker_stalled_after / 3,
        stalled_worker_timeout=settings.worker_stalled_after,
        install_signal_handlers=install_signal_handlers,
    )
