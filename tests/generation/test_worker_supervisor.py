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
