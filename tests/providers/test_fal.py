"""The fal adapter against the fake fal queue over real HTTP: what it sends, how every status
and failure maps, which errors are retried, and that a job follows the URLs fal returned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from rendio.config import Settings
from rendio.providers.base import Failure, GenerationRequest, ProviderError
from rendio.providers.fal import FalProvider
from tests.fakes.fal import FAL_KEY, FakeFal, served_fal
from tests.helpers.providers import generation_request, submitted

MODEL = "fal-ai/kling-video/v2.1/standard/text-to-video"


def request(**changes: Any) -> GenerationRequest:
    return generation_request(**({"provider_model_id": MODEL, "aspect_ratio": "9:16"} | changes))


@pytest.fixture(scope="module")
def fal_server() -> Iterator[FakeFal]:
    with served_fal() as fake:
        yield fake


@pytest.fixture
def fal(fal_server: FakeFal) -> FakeFal:
    fal_server.faults.clear()
    fal_server.outcome, fal_server.queue_seconds, fal_server.run_seconds = "ok", 0.0, 0.0
    return fal_server


@pytest.fixture
async def adapter(fal: FakeFal, tmp_path: Path) -> AsyncIterator[FalProvider]:
    provider = FalProvider(Settings(data_dir=tmp_path, provider_timeout=0.5, **fal.settings()))
    yield provider
    await provider.aclose()


async def test_submit_sends_the_input_and_keeps_the_urls_fal_returned(
    adapter: FalProvider, fal: FakeFal
) -> None:
    job = request(
        image_url="https://example.com/cat.png",
        options={"duration_suffix": "s", "input": {"generate_audio": False}},
        webhook_url="https://rendio.example/webhooks/fal",
    )
    submission = await adapter.submit(job)
    sent = fal.requests[submission.provider_job_id]
    assert sent.app == "fal-ai/kling-video"
    assert sent.webhook == "https://rendio.example/webhooks/fal"
    assert sent.body == {
        "prompt": "a lighthouse in a storm",
        "duration": "5s",
        "aspect_ratio": "9:16",
        "image_url": "https://example.com/cat.png",
        "generate_audio": False,
    }
    base = f"{fal.url}/fal-ai/kling-video/requests/{submission.provider_job_id}"
    assert submission.state == {
        "status_url": f"{base}/status",
        "response_url": base,
        "cancel_url": f"{base}/cancel",
    }


async def test_a_job_goes_from_queued_to_running_to_a_result_url(
    adapter: FalProvider, fal: FakeFal
) -> None:
    fal.queue_seconds, fal.run_seconds = 0.3, 0.3
    _, job = await submitted(adapter, request())
    queued = await adapter.poll("", job)
    assert (queued.status, queued.progress) == ("running", 0)
    await asyncio.sleep(0.35)
    running = await adapter.poll("", job)
    assert (running.status, running.progress) == ("running", 50)
    await asyncio.sleep(0.35)
    done = await adapter.poll("", job)
    assert done.status == "completed"
    assert done.download is not None and done.download.url.startswith(f"{fal.url}/files/")
    assert done.download.headers == {}  # a public URL: our key never goes to a file host
    assert done.cost == {"metrics": {"inference_time": 1.5}}


@pytest.mark.parametrize(
    ("outcome", "error_type", "failure"),
    [
        ("error", "request_timeout", Failure.TIMED_OUT),
        ("error", "runner_disconnected", Failure.UNAVAILABLE),
        ("error", "something_new", Failure.REJECTED),
        ("model_error", "", Failure.REJECTED),
    ],
)
async def test_failures_keep_fal_s_reason_and_map_to_our_codes(
    adapter: FalProvider, fal: FakeFal, outcome: str, error_type: str, failure: Failure
) -> None:
    fal.outcome, fal.error_type = outcome, error_type
    _, job = await submitted(adapter, request())
    result = await adapter.poll("", job)
    assert result.status == "failed"
    assert result.failure is failure
    assert result.error and (error_type in result.error or "refused" in result.error)


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [(429, True), (500, True), (503, True), ("slow", True), (400, False), (422, False)],
)
async def test_errors_are_classified(
    adapter: FalProvider, fal: FakeFal, fault: int | str, retryable: bool
) -> None:
    fal.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request())
    assert raised.value.retryable is retryable
    assert FAL_KEY not in str(raised.value)


async def test_a_wrong_key_is_not_retried(fal: FakeFal, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, **(fal.settings() | {"fal_key": "wrong"}))
    adapter = FalProvider(settings)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request())
    assert raised.value.retryable is False and "401" in str(raised.value)
    await adapter.aclose()


async def test_a_job_follows_its_own_urls_whatever_the_configured_queue(
    fal: FakeFal, tmp_path: Path
) -> None:
    first = FalProvider(Settings(data_dir=tmp_path, **fal.settings()))
    _, job = await submitted(first, request())
    await first.aclose()
    moved = Settings(
        data_dir=tmp_path, **(fal.settings() | {"fal_queue_url": "http://127.0.0.1:9"})
    )
    later = FalProvider(moved)
    assert (await later.poll("", job)).status == "completed"
    await later.aclose()


async def test_cancel_asks_fal_and_accepts_that_it_already_finished(
    adapter: FalProvider, fal: FakeFal
) -> None:
    fal.run_seconds = 30
    _, job = await submitted(adapter, request())
    await adapter.cancel("", job)
    assert ("PUT", job.state["cancel_url"].removeprefix(fal.url)) in fal.calls
    await adapter.cancel("", job)  # now ALREADY_COMPLETED: nothing to do


async def test_a_result_without_a_video_url_fails(adapter: FalProvider, fal: FakeFal) -> None:
    _, job = await submitted(adapter, request())
    broken = GenerationRequest(
        **{
            **job.__dict__,
            "state": {**job.state, "response_url": f"{fal.url}/.well-known/jwks.json"},
        }
    )
    result = await adapter.poll("", broken)
    assert result.status == "failed" and result.failure is Failure.UNAVAILABLE
