"""The worker supervisor: restarts after the database was away (shown against a real outage in
tests/faults), and gives up — visibly — only on failures that are not the database."""

from typing import Any

import procrastinate.exceptions
import pytest

from rendio.config import Settings
from rendio.services import build_services
from rendio.worker import WorkerGaveUp, run_worker


class FailingQueue:
    """Stands in for procrastinate's App: its worker fails with `errors`, one per run, then
    runs until cancelled (a real worker blocks until stopped)."""

    def __init__(self, errors: list[BaseException | None]) -> None:
        self.errors = errors
        self.runs: list[dict[str, Any]] = []

    async def run_worker_async(self, **options: Any) -> None:
        self.runs.append(options)
        error = self.errors[len(self.runs) - 1] if len(self.runs) <= len(self.errors) else None
        if error is not None:
            raise error
        if len(self.runs) > len(self.errors):
            raise SystemExit("done")  # ends the test's supervisor loop


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
    queue = FailingQueue([outage] * 7)
    with pytest.raises(SystemExit):
        await run_worker(queue, services)  # type: ignore[arg-type]  # a stand-in for App
    assert len(queue.runs) == 8
    assert queue.runs[-1]["additional_context"] == {"services": services}
    assert queue.runs[-1]["stalled_worker_timeout"] == services.settings.worker_stalled_after
    assert services.health.problems() == {}


async def test_a_worker_failing_for_another_reason_gives_up_and_is_not_ready(
    services: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("rendio.worker._MAX_BACKOFF", 0.01)
    queue = FailingQueue([TypeError("a bug")] * 5)
    with pytest.raises(WorkerGaveUp):
        await run_worker(queue, services)  # type: ignore[arg-type]  # a stand-in for App
    assert len(queue.runs) == 5
    assert "a bug" in services.health.problems()["worker"]


async def test_ready_answers_503_when_the_in_process_worker_is_gone(
    settings: Settings, monkeypatch: Any
) -> None:
    """`rendio serve` keeps answering /health, but /ready tells a load balancer (and an
    operator) that this process no longer runs background work."""
    import asyncio

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


async def test_a_stop_is_a_stop_even_when_procrastinates_shutdown_fails(services: Any) -> None:
    """Cancelled while the database is gone, procrastinate's shutdown raises instead of
    re-raising the cancellation; the supervisor must stop, not restart it."""
    import asyncio

    started = asyncio.Event()

    class ShutdownFails:
        runs = 0

        async def run_worker_async(self, **options: Any) -> None:
            self.runs += 1
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise procrastinate.exceptions.ConnectorException("unregister failed") from None

    queue = ShutdownFails()
    task = asyncio.create_task(run_worker(queue, services))  # type: ignore[arg-type]  # stand-in
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert queue.runs == 1
