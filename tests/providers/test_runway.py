"""The Runway adapter against the fake Runway API over real HTTP: what it sends, how every task
status and failure code maps, which errors are retried, cancelling, and that a job follows the
deployment it was sent to."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rendio.config import Settings
from rendio.providers.base import (
    Download,
    Failure,
    GenerationRequest,
    PollResult,
    ProviderError,
)
from rendio.providers.runway import RunwayProvider, prompt_text
from tests.fakes.runway import RUNWAY_KEY, RUNWAY_VERSION, FakeRunway, Step, served_runway
from tests.helpers.providers import generation_request, submitted

MODEL = "gen4_turbo"
IMAGE = "https://example.com/cat.png"


@pytest.fixture(scope="module")
def runway_server() -> Iterator[FakeRunway]:
    with served_runway() as fake:
        yield fake


@pytest.fixture
def runway(runway_server: FakeRunway) -> FakeRunway:
    runway_server.reset()
    runway_server.timeout_seconds = 1.0
    return runway_server


def settings(tmp_path: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "runway_api_key": RUNWAY_KEY,
        "runway_api_url": url,
        "provider_timeout": 0.5,
    }
    values.update(changes)
    return Settings(**values)


@pytest.fixture
async def adapter(runway: FakeRunway, tmp_path: Path) -> AsyncIterator[RunwayProvider]:
    provider = RunwayProvider(settings(tmp_path, runway.url))
    yield provider
    await provider.aclose()


def request(**changes: Any) -> GenerationRequest:
    # Runway has no webhooks: a webhook URL is ignored.
    hook = {"webhook_url": "https://rendio.example/webhooks/runway"}
    return generation_request(**({"provider_model_id": MODEL} | hook | changes))


async def poll_once(
    adapter: RunwayProvider, runway: FakeRunway, step: Step, **changes: Any
) -> tuple[str, PollResult]:
    """The result of the first look at a task whose script is just `step`."""
    runway.script = [step]
    task_id, job = await submitted(adapter, request(**changes))
    return task_id, await adapter.poll(task_id, job)


# --- submit ----------------------------------------------------------------------------------


async def test_text_to_video_sends_the_path_headers_and_body(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    submission = await adapter.submit(request())
    [call] = runway.calls("POST")
    assert call.path == "/v1/text_to_video"
    assert call.headers["authorization"] == f"Bearer {RUNWAY_KEY}"
    assert call.headers["x-runway-version"] == RUNWAY_VERSION
    assert call.body == {
        "model": MODEL,
        "promptText": "a lighthouse in a storm",
        "ratio": "1280:720",
        "duration": 5,
    }
    assert submission.provider_job_id in runway.tasks
    assert runway.tasks[submission.provider_job_id].endpoint == "text_to_video"
    assert submission.state == {"api_url": runway.url}


async def test_image_to_video_sends_the_image_and_the_prompt(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    submission = await adapter.submit(request(image_url=IMAGE, aspect_ratio="9:16", duration=10))
    [call] = runway.calls("POST")
    assert call.path == "/v1/image_to_video"
    assert call.headers["authorization"] == f"Bearer {RUNWAY_KEY}"
    assert call.body == {
        "model": MODEL,
        "promptImage": IMAGE,
        "promptText": "a lighthouse in a storm",
        "ratio": "720:1280",
        "duration": 10,
    }
    assert runway.tasks[submission.provider_job_id].endpoint == "image_to_video"


@pytest.mark.parametrize(
    ("aspect_ratio", "resolution", "ratio"),
    [
        ("16:9", "720p", "1280:720"),
        ("9:16", "720p", "720:1280"),
        ("1:1", "720p", "960:960"),
        ("16:9", "1080p", "1920:1080"),
        ("9:16", "1080p", "1080:1920"),
        ("1:1", "1080p", "1440:1440"),
    ],
)
async def test_the_ratio_comes_from_the_aspect_ratio_and_resolution(
    adapter: RunwayProvider, runway: FakeRunway, aspect_ratio: str, resolution: str, ratio: str
) -> None:
    await adapter.submit(request(aspect_ratio=aspect_ratio, resolution=resolution))
    [call] = runway.calls("POST")
    assert call.body is not None and call.body["ratio"] == ratio


@pytest.mark.parametrize(("aspect_ratio", "resolution"), [("4:3", "720p"), ("16:9", "4k")])
async def test_an_unsupported_ratio_is_refused_without_calling_runway(
    adapter: RunwayProvider, runway: FakeRunway, aspect_ratio: str, resolution: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request(aspect_ratio=aspect_ratio, resolution=resolution))
    assert raised.value.retryable is False
    assert runway.requests == []


async def test_a_long_prompt_is_cut_to_what_runway_accepts(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    await adapter.submit(request(prompt="x" * 1500))
    await adapter.submit(request(prompt="🌊" * 600))  # two UTF-16 units each
    sent = [call.body["promptText"] for call in runway.calls("POST") if call.body]
    assert sent == ["x" * 1000, "🌊" * 500]


def test_prompt_cutting_never_splits_a_character() -> None:
    assert prompt_text("a" + "🌊" * 600) == "a" + "🌊" * 499  # the 500th wave does not fit
    assert prompt_text("short") == "short"


# --- poll ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "progress"),
    [
        ({"status": "PENDING"}, 0),
        ({"status": "THROTTLED"}, 0),
        ({"status": "RUNNING", "progress": 0.5}, 50),
        ({"status": "RUNNING", "progress": 0.123}, 12),
        ({"status": "RUNNING", "progress": 0.999}, 99),  # 100 only when done
        ({"status": "RUNNING", "progress": 1.5}, 99),
        ({"status": "RUNNING", "progress": -0.2}, 0),
        ({"status": "RUNNING", "progress": None}, 0),
        ({"status": "RUNNING", "progress": "half"}, 0),
    ],
)
async def test_waiting_and_running_tasks_keep_running(
    adapter: RunwayProvider, runway: FakeRunway, step: Step, progress: int
) -> None:
    _, result = await poll_once(adapter, runway, step)
    assert (result.status, result.progress) == ("running", progress)


@pytest.mark.parametrize("step", ["EXPIRED", "SOMETHING_NEW", {"status": None}])
async def test_an_unknown_or_missing_status_keeps_polling(
    adapter: RunwayProvider, runway: FakeRunway, step: Step
) -> None:
    _, result = await poll_once(adapter, runway, step)
    assert result.status == "running"
    assert result.error is None


async def test_a_succeeded_task_gives_its_public_output_url_and_cost(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    runway.video_bytes = b"the video"
    task_id, result = await poll_once(adapter, runway, "SUCCEEDED", duration=4)
    assert result.status == "completed" and result.progress == 100
    assert result.download == Download(runway.file_url(task_id))
    assert result.download.headers == {}  # our key never goes to a file host
    assert result.cost == {"credits": 4 * runway.credits_per_second}
    async with httpx.AsyncClient() as client:
        assert (await client.get(result.download.url)).content == b"the video"
        runway.expire(task_id)
        assert (await client.get(result.download.url)).status_code == 404


@pytest.mark.parametrize(
    "step",
    [{"status": "SUCCEEDED", "output": []}, {"status": "SUCCEEDED", "output": None}],
    ids=["empty", "missing"],
)
async def test_a_succeeded_task_without_output_fails(
    adapter: RunwayProvider, runway: FakeRunway, step: Step
) -> None:
    _, result = await poll_once(adapter, runway, step)
    assert result.status == "failed"
    assert result.failure is Failure.UNAVAILABLE
    assert result.download is None


async def test_a_task_walks_through_its_script(adapter: RunwayProvider, runway: FakeRunway) -> None:
    task_id, job = await submitted(adapter, request())
    seen = [await adapter.poll(task_id, job) for _ in range(4)]
    assert [(r.status, r.progress) for r in seen] == [
        ("running", 0),
        ("running", 50),
        ("completed", 100),
        ("completed", 100),
    ]


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        ("SAFETY.INPUT.TEXT", Failure.REJECTED),
        ("SAFETY.OUTPUT.VIDEO", Failure.REJECTED),
        ("INPUT_PREPROCESSING.SAFETY.TEXT", Failure.REJECTED),
        ("INTERNAL.BAD_OUTPUT.CODE01", Failure.UNAVAILABLE),
        ("INTERNAL", Failure.UNAVAILABLE),
        ("INPUT_PREPROCESSING.INTERNAL", Failure.UNAVAILABLE),
        ("ASSET.INVALID", Failure.REJECTED),
        ("INTERNALISH.NEW", Failure.REJECTED),
        ("SOMETHING.NEW", Failure.REJECTED),
    ],
)
async def test_failure_codes_map_to_our_failure_classes(
    adapter: RunwayProvider, runway: FakeRunway, code: str, failure: Failure
) -> None:
    step = {"status": "FAILED", "failureCode": code, "failure": "It did not work."}
    _, result = await poll_once(adapter, runway, step, duration=6)
    assert result.status == "failed"
    assert result.failure is failure
    assert result.error == f"{code}: It did not work."
    assert result.cost == {"credits": 6 * runway.credits_per_second}


async def test_a_failure_without_a_code_is_a_refusal(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    step = {"status": "FAILED", "failureCode": None, "failure": None}
    _, result = await poll_once(adapter, runway, step)
    assert (result.status, result.failure) == ("failed", Failure.REJECTED)
    assert result.error and "None" not in result.error


async def test_a_cancelled_task_fails_as_unavailable(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    _, result = await poll_once(adapter, runway, "CANCELLED")
    assert (result.status, result.failure) == ("failed", Failure.UNAVAILABLE)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [(429, True), (500, True), (502, True), (503, True), ("timeout", True), (400, False)],
)
async def test_submit_errors_are_classified(
    adapter: RunwayProvider, runway: FakeRunway, fault: int | str, retryable: bool
) -> None:
    runway.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request())
    assert raised.value.retryable is retryable
    assert RUNWAY_KEY not in str(raised.value)


@pytest.mark.parametrize(
    ("fault", "retryable"), [(429, True), (500, True), ("timeout", True), (400, False)]
)
async def test_poll_errors_are_classified(
    adapter: RunwayProvider, runway: FakeRunway, fault: int | str, retryable: bool
) -> None:
    task_id, job = await submitted(adapter, request())
    runway.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.poll(task_id, job)
    assert raised.value.retryable is retryable


async def test_a_wrong_key_is_not_retried(runway: FakeRunway, tmp_path: Path) -> None:
    adapter = RunwayProvider(settings(tmp_path, runway.url, runway_api_key="key_wrong"))
    try:
        with pytest.raises(ProviderError) as raised:
            await adapter.submit(request())
    finally:
        await adapter.aclose()
    assert raised.value.retryable is False and "401" in str(raised.value)
    assert "key_wrong" not in str(raised.value)


async def test_the_configured_api_version_is_sent(runway: FakeRunway, tmp_path: Path) -> None:
    adapter = RunwayProvider(settings(tmp_path, runway.url, runway_api_version="2099-01-01"))
    try:
        with pytest.raises(ProviderError) as raised:
            await adapter.submit(request())
    finally:
        await adapter.aclose()
    assert raised.value.retryable is False and "400" in str(raised.value)
    assert runway.requests[0].headers["x-runway-version"] == "2099-01-01"


async def test_the_fake_refuses_a_request_without_a_version(runway: FakeRunway) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.get(
            f"{runway.url}/v1/tasks/{uuid.uuid4()}",
            headers={"Authorization": f"Bearer {RUNWAY_KEY}"},
        )
    assert answer.status_code == 400


def test_an_adapter_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RUNWAY_API_KEY"):
        RunwayProvider(Settings(data_dir=tmp_path, runway_api_key=None))


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_deletes_the_task_and_tolerates_it_being_gone(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    task_id, job = await submitted(adapter, request())
    await adapter.poll(task_id, job)  # PENDING
    await adapter.cancel(task_id, job)
    [call] = runway.calls("DELETE")
    assert call.path == f"/v1/tasks/{task_id}"
    assert call.headers["authorization"] == f"Bearer {RUNWAY_KEY}"
    assert call.headers["x-runway-version"] == RUNWAY_VERSION
    assert (await adapter.poll(task_id, job)).failure is Failure.UNAVAILABLE  # CANCELLED
    await adapter.cancel(task_id, job)  # a finished task is deleted
    await adapter.cancel(task_id, job)  # 404: already gone
    await adapter.cancel(str(uuid.uuid4()), job)  # never known: gone too
    assert len(runway.calls("DELETE")) == 4


@pytest.mark.parametrize(("fault", "retryable"), [(500, True), (429, True), (400, False)])
async def test_other_cancel_errors_propagate(
    adapter: RunwayProvider, runway: FakeRunway, fault: int, retryable: bool
) -> None:
    task_id, job = await submitted(adapter, request())
    runway.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.cancel(task_id, job)
    assert raised.value.retryable is retryable
    assert not runway.tasks[task_id].cancelled


# --- following the deployment ----------------------------------------------------------------


async def test_a_job_follows_the_api_url_it_was_sent_to(runway: FakeRunway, tmp_path: Path) -> None:
    first = RunwayProvider(settings(tmp_path, runway.url))
    task_id, job = await submitted(first, request())
    await first.aclose()
    with served_runway() as elsewhere:
        later = RunwayProvider(settings(tmp_path, elsewhere.url))
        try:
            assert (await later.poll(task_id, job)).status == "running"
            await later.cancel(task_id, job)
            new_id, new_job = await submitted(later, request())
        finally:
            await later.aclose()
        assert elsewhere.calls("GET") == [] and elsewhere.calls("DELETE") == []
        assert new_job.state == {"api_url": elsewhere.url} and new_id in elsewhere.tasks
    assert [call.method for call in runway.requests] == ["POST", "GET", "DELETE"]
    assert runway.tasks[task_id].cancelled


async def test_a_job_without_a_kept_url_uses_the_configured_one(
    adapter: RunwayProvider, runway: FakeRunway
) -> None:
    task_id, job = await submitted(adapter, request())
    legacy = GenerationRequest(**{**job.__dict__, "state": {}})
    assert (await adapter.poll(task_id, legacy)).status == "running"
    assert runway.calls("GET")[0].path == f"/v1/tasks/{task_id}"
