"""The worker supervisor: restarts after the database was away (shown against a real outage in
tests/faults), and gives up — visibly — only on failures that are not the database."""

import asyncio
import random
from typing import Any

import procrastinate.exceptions
import pytest

from rendio.config import Settings
from rendio.platform.queue import create_queue
from rendio.services import build_services
from rendio.tasks import registration
from rendio.worker import WorkerGaveUp, run_worker


class FailingWorkers:
    """Stands in for procrastinate's workers (`rendio.worker.new_worker`): each run fails with
    the next of `errors`; after them, a run lasts until it is asked to stop."""

    worker_id = 1

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        self.runs: list[dict[str, Any]] = []
        self.lasting = asyncio.Event()
        self.stopped = asyncio.Event()

    def __call__(self, queue: Any, **options: Any) -> Any:
        self.runs.append(options)
        return self

    async def run(self) -> None:
        if len(self.runs) <= len(self.errors):
            raise self.errors[len(self.runs) - 1]
        self.lasting.set()
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


@pytest.fixture
async def services(settings: Settings) -> Any:
    built = build_services(settings, settings.database_url or "", pool_size=1)
    yield built
    await built.aclose()


async def test_database_trouble_is_retried_without_giving_up(
    services: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("rendio.worker._MAX_BACKOFF", 0.01)
    outage = procrastinate.exceptions.ConnectorException("pool timeout")
    workers = FailingWorkers([outage] * 7)
    monkeypatch.setattr("rendio.worker.new_worker", workers)
    task = asyncio.create_task(run_worker(None, services))  # type: ignore[arg-type]  # no queue
    await asyncio.wait_for(workers.lasting.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert workers.stopped.is_set()
    assert len(workers.runs) == 8
    assert workers.runs[-1]["additional_context"] == {"services": services}
    assert workers.runs[-1]["stalled_worker_timeout"] == services.settings.worker_stalled_after
    assert services.health.problems() == {}


async def test_a_worker_failing_for_another_reason_gives_up_and_is_not_ready(
    services: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("rendio.worker._MAX_BACKOFF", 0.01)
    workers = FailingWorkers([TypeError("a bug")] * 5)
    monkeypatch.setattr("rendio.worker.new_worker", workers)
    with pytest.raises(WorkerGaveUp):
        await run_worker(None, services)  # type: ignore[arg-type]  # no queue: no real worker
    assert len(workers.runs) == 5
    assert "a bug" in services.health.problems()["worker"]


async def test_ready_answers_503_when_the_in_process_worker_is_gone(
    settings: Settings, monkeypatch: Any
) -> None:
    """`rendio serve` keeps answering /health, but /ready tells a load balancer (and an
    operator) that this process no longer runs background work."""

    from rendio import app as app_module
    from tests.helpers.clients import open_client

    async def dies_at_once(queue: Any, services: Any) -> None:
        await asyncio.sleep(0)
        raise WorkerGaveUp("a bug, five times")

    monkeypatch.setattr(app_module, "worker_loop", dies_at_once)
    application = app_module.create_app(settings, settings.database_url or "", run_worker=True)
    async for client in open_client(application):
        for _ in range(100):
            ready = await client.get("/ready")
            if ready.status_code != 200:
                break
            await asyncio.sleep(0.01)
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "ERR_6004"
        assert "worker" in ready.json()["error"]["details"]["down"]
        assert (await client.get("/health")).status_code == 200


async def test_a_stop_is_a_stop_even_when_procrastinates_shutdown_fails(
    services: Any, monkeypatch: Any
) -> None:
    """Stopped while the database is gone, procrastinate's shutdown raises; the supervisor must
    stop, not restart it."""
    started, stop = asyncio.Event(), asyncio.Event()

    class ShutdownFails:
        runs = 0
        worker_id = 1

        async def run(self) -> None:
            self.runs += 1
            started.set()
            await stop.wait()
            raise procrastinate.exceptions.ConnectorException("unregister failed")

        def stop(self) -> None:
            stop.set()

    worker = ShutdownFails()
    monkeypatch.setattr("rendio.worker.new_worker", lambda queue, **options: worker)
    task = asyncio.create_task(run_worker(None, services))  # type: ignore[arg-type]  # no queue
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert worker.runs == 1


async def test_a_stop_right_after_the_start_is_not_lost(settings: Settings) -> None:
    """Stopped while procrastinate's worker makes its first query on a fresh pool, the real
    worker stops. Cancelling its task instead could hang for ever: psycopg_pool swallows a
    cancellation that arrives as it hands over a new connection (one start in a few hung)."""
    built = build_services(settings, settings.database_url or "", pool_size=1)
    try:
        for _ in range(20):
            queue = create_queue(settings.database_url or "", registration(settings))
            await queue.open_async()
            task = asyncio.create_task(run_worker(queue, built))
            await asyncio.sleep(0.0005 * random.randrange(20))
            task.cancel()
            # Not a timing: a lost stop never ends.
            done, _ = await asyncio.wait({task}, timeout=30)
            await queue.close_async()
            assert done, "the worker did not stop"
    finally:
        await built.aclose()
