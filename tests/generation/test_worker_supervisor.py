"""The worker is started again when procrastinate's worker dies (e.g. the database was away)."""

from typing import Any

from rendio.config import Settings
from rendio.services import build_services
from rendio.worker import run_worker


class DyingQueue:
    """Stands in for procrastinate's App: its worker dies once, then runs until stopped."""

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []

    async def run_worker_async(self, **options: Any) -> None:
        self.runs.append(options)
        if len(self.runs) == 1:
            raise ConnectionError("PoolTimeout: the database went away")


async def test_a_dead_worker_is_started_again(settings: Settings) -> None:
    queue = DyingQueue()
    services = build_services(settings, settings.database_url or "", pool_size=1)
    await run_worker(queue, services, install_signal_handlers=False)  # type: ignore[arg-type]
    await services.aclose()
    assert len(queue.runs) == 2
    assert queue.runs[1]["additional_context"] == {"services": services}
    assert queue.runs[1]["stalled_worker_timeout"] == settings.worker_stalled_after
