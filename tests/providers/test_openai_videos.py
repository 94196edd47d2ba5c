"""The OpenAI-compatible videos adapter against a fake gateway over real HTTP: multipart
creation, every status word mapped, errors classified, content fetched with the key, cancel,
and jobs following the gateway they were sent to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from rendio.config import Settings
from rendio.providers.base import Failure, GenerationRequest, PollResult, ProviderError
from rendio.providers.openai_videos import OpenAiVideosProvider
from tests.fakes.openai_videos import (
    MISSING,
    WEBHOOK_SECRET,
    FakeVideosGateway,
    served_videos_gateway,
)
from tests.helpers.providers import generation_request, submitted


@pytest.fixture
def gateway() -> Iterator[FakeVideosGateway]:
    with served_videos_gateway() as fake:
        yield fake


def settings_for(fake: FakeVideosGateway, tmp_path: Path, key: str = "sk-test") -> Settings:
    return Settings(
        data_dir=tmp_path, openai_api_key=key, openai_base_url=fake.url, provider_timeout=0.5
    )


@pytest.fixture
async def provider(
    gateway: FakeVideosGateway, tmp_path: Path
) -> AsyncIterator[OpenAiVideosProvider]:
    adapter = OpenAiVideosProvider(settings_for(gateway, tmp_path))
    yield adapter
    await adapter.aclose()


def job(**changes: Any) -> GenerationRequest:
    return generation_request(**({"provider_model_id": "sora-2", "duration": 8} | changes))


async def submitted_job(provider: OpenAiVideosProvider) -> tuple[str, GenerationRequest]:
    return await submitted(provider, job())


async def poll_until_done(
    provider: OpenAiVideosProvider, video_id: str, request: GenerationRequest
) -> PollResult:
    for _ in range(10):
        result = await provider.poll(video_id, request)
        if result.status != "running":
            return result
    raise AssertionError("the video never finished")


# --- creation --------------------------------------------------------------------------------
async def test_create_is_multipart_with_the_fields_and_the_key(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    submission = await provider.submit(job())

    [call] = gateway.calls("POST")
    assert call.path == "/v1/videos"
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert call.headers["authorization"] == "Bearer sk-test"
    assert call.form == {
        "prompt": "a lighthouse in a storm",
        "model": "sora-2",
        "seconds": "8",
        "size": "1280x720",
    }
    assert call.files == {}
    assert submission.provider_job_id in gateway.videos
    assert submission.state == {"base_url": gateway.url}


@pytest.mark.parametrize(
    ("aspect_ratio", "resolution", "size"),
    [
        ("16:9", "720p", "1280x720"),
        ("9:16", "720p", "720x1280"),
        ("16:9", "1080p", "1792x1024"),
        ("9:16", "1080p", "1024x1792"),
    ],
)
async def test_the_size_follows_aspect_ratio_and_resolution(
    gateway: FakeVideosGateway,
    provider: OpenAiVideosProvider,
    aspect_ratio: str,
    resolution: str,
    size: str,
) -> None:
    await provider.submit(job(aspect_ratio=aspect_ratio, resolution=resolution, duration=4))
    [call] = gateway.calls("POST")
    assert call.form["size"] == size
    assert call.form["seconds"] == "4"


@pytest.mark.parametrize(("aspect_ratio", "resolution"), [("1:1", "720p"), ("16:9", "480p")])
async def test_a_size_the_api_lacks_is_refused_before_any_call(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider, aspect_ratio: str, resolution: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        await provider.submit(job(aspect_ratio=aspect_ratio, resolution=resolution))
    assert raised.value.retryable is False
    assert gateway.requests == []


async def test_an_image_goes_by_reference(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    image = "https://media.example.com/inputs/cat.png?sig=abc"
    await provider.submit(job(image_url=image))
    [call] = gateway.calls("POST")
    assert call.form["input_reference[image_url]"] == image
    assert call.files == {}, "the image itself must not be uploaded"


# --- statuses --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("step", "status", "progress", "failure", "error"),
    [
        ("queued", "running", 0, None, None),
        ({"status": "in_progress", "progress": 37}, "running", 37, None, None),
        ({"status": "in_progress", "progress": 100}, "running", 99, None, None),
        ({"status": "in_progress", "progress": -5}, "running", 0, None, None),
        ({"status": "processing", "progress": 150}, "running", 99, None, None),
        ({"status": "in_progress", "progress": None}, "running", None, None, None),
        ("completed", "completed", 100, None, None),
        ("succeeded", "completed", 100, None, None),
        (
            {"status": "failed", "error": {"code": "moderation_blocked", "message": "no"}},
            "failed",
            None,
            Failure.REJECTED,
            "moderation_blocked: no",
        ),
        (
            {"status": "failed", "error": {"code": "content_policy_violation", "message": "x"}},
            "failed",
            None,
            Failure.REJECTED,
            "content_policy_violation: x",
        ),
        (
            {"status": "failed", "error": {"code": "input_safety_check", "message": "x"}},
            "failed",
            None,
            Failure.REJECTED,
            "input_safety_check: x",
        ),
        (
            {"status": "failed", "error": {"code": "generation_timeout", "message": "slow"}},
            "failed",
            None,
            Failure.TIMED_OUT,
            "generation_timeout: slow",
        ),
        (
            {"status": "failed", "error": {"code": "internal_error", "message": "oops"}},
            "failed",
            None,
            Failure.UNAVAILABLE,
            "internal_error: oops",
        ),
        ({"status": "failed", "error": None}, "failed", None, Failure.UNAVAILABLE, None),
        ("cancelled", "failed", None, Failure.UNAVAILABLE, None),
        ("canceled", "failed", None, Failure.UNAVAILABLE, None),
        ("expired", "failed", None, Failure.UNAVAILABLE, None),
        ("warming_up", "running", None, None, None),
        ({"status": None}, "running", None, None, None),
        ({"status": MISSING}, "running", None, None, None),
    ],
)
async def test_every_status_maps_explicitly(
    gateway: FakeVideosGateway,
    provider: OpenAiVideosProvider,
    step: str | dict[str, Any],
    status: str,
    progress: int | None,
    failure: Failure | None,
    error: str | None,
) -> None:
    video_id, request = await submitted_job(provider)
    gateway.set_script(video_id, step)

    result = await provider.poll(video_id, request)

    assert (result.status, result.progress) == (status, progress)
    if failure is not None:
        assert result.failure == failure
        assert result.error
    if error is not None:
        assert result.error == error
    if status == "completed":
        assert result.download is not None
        assert result.thumbnail is not None
    else:
        assert result.download is None
        assert result.thumbnail is None


async def test_the_default_script_runs_queued_in_progress_completed(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, request = await submitted_job(provider)
    seen = [await provider.poll(video_id, request) for _ in range(3)]
    assert [(r.status, r.progress) for r in seen] == [
        ("running", 0),
        ("running", 50),
        ("completed", 100),
    ]
    assert [c.path for c in gateway.calls("GET")] == [f"/v1/videos/{video_id}"] * 3


async def test_cost_is_recorded_only_when_the_gateway_reports_it(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, request = await submitted_job(provider)
    gateway.set_script(video_id, "completed")
    assert (await provider.poll(video_id, request)).cost is None

    usage = {"duration_seconds": 8, "total_cost_usd": 0.8}
    gateway.set_script(video_id, {"status": "completed", "usage": usage, "cost": 0.8})
    assert (await provider.poll(video_id, request)).cost == {"usage": usage, "cost": 0.8}


# --- errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", [429, 500, 503, "timeout"])
async def test_busy_or_broken_gateways_are_retryable(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider, fault: int | str
) -> None:
    gateway.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(job())
    assert raised.value.retryable is True


async def test_a_fault_while_polling_is_retryable(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, request = await submitted_job(provider)
    gateway.faults.append(429)
    with pytest.raises(ProviderError) as raised:
        await provider.poll(video_id, request)
    assert raised.value.retryable is True
    assert (await provider.poll(video_id, request)).status == "running"


async def test_a_bad_request_is_not_retryable(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    gateway.faults.append(400)
    with pytest.raises(ProviderError) as raised:
        await provider.submit(job())
    assert raised.value.retryable is False


async def test_a_wrong_key_is_not_retryable(gateway: FakeVideosGateway, tmp_path: Path) -> None:
    adapter = OpenAiVideosProvider(settings_for(gateway, tmp_path, key="sk-wrong"))
    try:
        with pytest.raises(ProviderError) as raised:
            await adapter.submit(job())
    finally:
        await adapter.aclose()
    assert raised.value.retryable is False
    assert "401" in str(raised.value)
    assert "sk-wrong" not in str(raised.value)


# --- content ---------------------------------------------------------------------------------
async def test_the_download_fetches_the_video_and_thumbnail_with_its_headers(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    gateway.video_bytes = b"the video itself"
    gateway.thumbnail_bytes = b"the thumbnail"
    video_id, request = await submitted_job(provider)
    result = await poll_until_done(provider, video_id, request)
    assert result.status == "completed"
    assert result.download is not None
    assert result.thumbnail is not None
    assert result.download.url == f"{gateway.url}/videos/{video_id}/content?variant=video"
    assert result.thumbnail.url == f"{gateway.url}/videos/{video_id}/content?variant=thumbnail"
    expected = {"Authorization": "Bearer sk-test", "Accept": "application/binary"}
    assert result.download.headers == expected
    assert result.thumbnail.headers == expected

    async with httpx.AsyncClient() as client:
        video = await client.get(result.download.url, headers=result.download.headers)
        thumbnail = await client.get(result.thumbnail.url, headers=result.thumbnail.headers)
        keyless = await client.get(result.download.url)
        gateway.expire(video_id)
        expired = await client.get(result.download.url, headers=result.download.headers)

    assert (video.status_code, video.content) == (200, b"the video itself")
    assert video.headers["content-type"] == "video/mp4"
    assert (thumbnail.status_code, thumbnail.content) == (200, b"the thumbnail")
    assert thumbnail.headers["content-type"] == "image/webp"
    assert keyless.status_code == 401
    assert keyless.json()["error"]["code"] == "invalid_api_key"
    assert expired.status_code == 404


# --- cancel ----------------------------------------------------------------------------------
async def test_cancel_deletes_the_video_and_tolerates_it_being_gone(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, request = await submitted_job(provider)
    await provider.cancel(video_id, request)
    await provider.cancel(video_id, request)  # 404 now: nothing left to do

    deletes = gateway.calls("DELETE")
    assert [c.path for c in deletes] == [f"/v1/videos/{video_id}"] * 2
    assert deletes[0].headers["authorization"] == "Bearer sk-test"
    assert gateway.videos[video_id].deleted


async def test_a_cancel_the_gateway_could_not_take_is_retryable(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, request = await submitted_job(provider)
    gateway.faults.append(503)
    with pytest.raises(ProviderError) as raised:
        await provider.cancel(video_id, request)
    assert raised.value.retryable is True
    assert not gateway.videos[video_id].deleted


# --- the job follows its gateway -------------------------------------------------------------
async def test_a_job_follows_the_gateway_it_was_sent_to(
    gateway: FakeVideosGateway, tmp_path: Path
) -> None:
    sender = OpenAiVideosProvider(settings_for(gateway, tmp_path))
    with served_videos_gateway() as other:
        # The configuration now names another gateway; the job must still go to the first.
        follower = OpenAiVideosProvider(settings_for(other, tmp_path))
        try:
            video_id, request = await submitted_job(sender)
            result = await poll_until_done(follower, video_id, request)
            await follower.cancel(video_id, request)
        finally:
            await sender.aclose()
            await follower.aclose()
        assert other.requests == []
    assert result.status == "completed"
    assert result.download is not None
    assert result.download.url.startswith(f"{gateway.url}/videos/{video_id}/content")
    assert len(gateway.calls("GET")) == 3
    assert gateway.videos[video_id].deleted


async def test_a_job_without_a_recorded_gateway_uses_the_configured_one(
    gateway: FakeVideosGateway, provider: OpenAiVideosProvider
) -> None:
    video_id, _ = await submitted_job(provider)
    result = await provider.poll(video_id, job())
    assert result.status == "running"
    assert len(gateway.calls("GET")) == 1


async def test_aclose_closes_the_client(gateway: FakeVideosGateway, tmp_path: Path) -> None:
    adapter = OpenAiVideosProvider(settings_for(gateway, tmp_path))
    await adapter.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.submit(job())


# --- the fake's webhook signing --------------------------------------------------------------
def test_signed_webhooks_verify_as_standard_webhooks(gateway: FakeVideosGateway) -> None:
    event = gateway.webhook_event("video_123", "video.failed")
    body, headers = gateway.sign_webhook(event, WEBHOOK_SECRET)

    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == event
    assert event["object"] == "event"
    assert event["id"].startswith("evt_")
    assert event["data"] == {"id": "video_123"}
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= headers.keys()
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(body.replace(b"video_123", b"video_999"), headers)
    stale_body, stale = gateway.sign_webhook(event, at=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(stale_body, stale)
