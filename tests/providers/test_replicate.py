"""The Replicate adapter against the fake Replicate API over real HTTP: what it sends, how every
prediction status and failure maps, which errors are retried, cancelling, that a job follows the
URLs Replicate returned, and the fake's own secret endpoint and signed webhooks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rendio.config import Settings
from rendio.providers.base import (
    Download,
    Failure,
    GenerationRequest,
    PollResult,
    ProviderError,
)
from rendio.providers.replicate import ReplicateProvider
from tests.fakes.apple import ServedApp
from tests.fakes.replicate import (
    REPLICATE_TOKEN,
    WEBHOOK_SECRET,
    FakeReplicate,
    Step,
    served_replicate,
    sign,
)
from tests.helpers.processes import free_port
from tests.helpers.providers import generation_request, submitted

MODEL = "minimax/video-01"
IMAGE = "https://example.com/cat.png"
HOOK = "https://rendio.example/webhooks/replicate"


@pytest.fixture(scope="module")
def replicate_server() -> Iterator[FakeReplicate]:
    with served_replicate() as fake:
        yield fake


@pytest.fixture
def replicate(replicate_server: FakeReplicate) -> FakeReplicate:
    replicate_server.reset()
    replicate_server.timeout_seconds = 1.0
    return replicate_server


def settings(tmp_path: Path, url: str, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "replicate_api_token": REPLICATE_TOKEN,
        "replicate_api_url": url,
        "provider_timeout": 0.5,
    }
    values.update(changes)
    return Settings(**values)


@pytest.fixture
async def adapter(replicate: FakeReplicate, tmp_path: Path) -> AsyncIterator[ReplicateProvider]:
    provider = ReplicateProvider(settings(tmp_path, replicate.url))
    yield provider
    await provider.aclose()


def request(**changes: Any) -> GenerationRequest:
    return generation_request(**({"provider_model_id": MODEL, "duration": 6} | changes))


async def poll_once(
    adapter: ReplicateProvider, replicate: FakeReplicate, step: Step, **changes: Any
) -> tuple[str, PollResult]:
    """The result of the first look at a prediction whose script is just `step`."""
    replicate.script = [step]
    prediction_id, job = await submitted(adapter, request(**changes))
    return prediction_id, await adapter.poll(prediction_id, job)


# --- submit ----------------------------------------------------------------------------------


async def test_submit_sends_the_model_path_token_and_input(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    submission = await adapter.submit(request())
    [call] = replicate.calls("POST")
    assert call.path == f"/v1/models/{MODEL}/predictions"
    assert call.headers["authorization"] == f"Bearer {REPLICATE_TOKEN}"
    assert call.body == {
        "input": {"prompt": "a lighthouse in a storm", "duration": 6, "aspect_ratio": "16:9"}
    }  # no webhook without a URL for one
    prediction_id = submission.provider_job_id
    assert replicate.predictions[prediction_id].model == MODEL
    base = f"{replicate.url}/v1/predictions/{prediction_id}"
    assert submission.state == {"get": base, "cancel": f"{base}/cancel"}


@pytest.mark.parametrize(
    ("options", "field"),
    [({}, "image"), ({"image_field": "first_frame_image"}, "first_frame_image")],
)
async def test_the_image_goes_under_the_model_s_own_field_with_the_fixed_input(
    adapter: ReplicateProvider, replicate: FakeReplicate, options: dict[str, Any], field: str
) -> None:
    fixed = {"prompt_optimizer": False, "aspect_ratio": "9:16"}
    await adapter.submit(request(image_url=IMAGE, options={**options, "input": fixed}))
    [call] = replicate.calls("POST")
    assert call.body == {
        "input": {
            "prompt": "a lighthouse in a storm",
            "duration": 6,
            "aspect_ratio": "9:16",  # the fixed input wins
            field: IMAGE,
            "prompt_optimizer": False,
        }
    }
    assert replicate.requests == [call]  # the image is Replicate's to fetch, not ours


async def test_a_webhook_asks_for_the_completed_event_only(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    await adapter.submit(request(webhook_url=HOOK))
    [call] = replicate.calls("POST")
    assert call.body is not None
    assert call.body["webhook"] == HOOK
    assert call.body["webhook_events_filter"] == ["completed"]


@pytest.mark.parametrize("model", ["minimax", "minimax/video-01/extra", "minimax/video:abc", "/x"])
async def test_a_model_id_that_is_not_owner_name_is_refused_without_calling(
    adapter: ReplicateProvider, replicate: FakeReplicate, model: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request(provider_model_id=model))
    assert raised.value.retryable is False
    assert replicate.requests == []


# --- poll ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "status", "progress", "failure"),
    [
        ("starting", "running", 0, None),
        ("processing", "running", 50, None),
        ("canceled", "failed", None, Failure.UNAVAILABLE),
        ("aborted", "failed", None, Failure.TIMED_OUT),
        ("queued", "running", None, None),
        ({"status": None}, "running", None, None),
        ({"status": 7}, "running", None, None),
    ],
    ids=["starting", "processing", "canceled", "aborted", "unknown", "missing", "not-a-word"],
)
async def test_every_status_maps_explicitly(
    adapter: ReplicateProvider,
    replicate: FakeReplicate,
    step: Step,
    status: str,
    progress: int | None,
    failure: Failure | None,
) -> None:
    _, result = await poll_once(adapter, replicate, step)
    assert (result.status, result.progress) == (status, progress)
    if failure is None:
        assert result.error is None
    else:
        assert result.failure is failure and result.error


@pytest.mark.parametrize("as_list", [False, True], ids=["string", "list"])
async def test_a_succeeded_prediction_gives_its_public_output_and_metrics(
    adapter: ReplicateProvider, replicate: FakeReplicate, as_list: bool
) -> None:
    replicate.output_list = as_list
    replicate.video_bytes = b"the video"
    prediction_id, result = await poll_once(adapter, replicate, "succeeded")
    assert result.status == "completed" and result.progress == 100
    assert result.download == Download(replicate.file_url(prediction_id))
    assert result.download.headers == {}  # our token never goes to a file host
    assert result.cost is not None and result.cost["metrics"]["predict_time"] == 12.5
    async with httpx.AsyncClient() as client:
        assert (await client.get(result.download.url)).content == b"the video"
        replicate.expire(prediction_id)
        assert (await client.get(result.download.url)).status_code == 404


async def test_the_first_url_of_a_mixed_list_is_the_video(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    step = {"status": "succeeded", "output": [None, 3, "https://files.example/v.mp4", "x"]}
    _, result = await poll_once(adapter, replicate, step)
    assert result.download == Download("https://files.example/v.mp4")


@pytest.mark.parametrize("output", [None, [], [None, 1], "", {"video": "https://x"}], ids=str)
async def test_a_succeeded_prediction_without_output_fails(
    adapter: ReplicateProvider, replicate: FakeReplicate, output: Any
) -> None:
    _, result = await poll_once(adapter, replicate, {"status": "succeeded", "output": output})
    assert result.status == "failed"
    assert result.failure is Failure.UNAVAILABLE
    assert result.error and "no output" in result.error
    assert result.download is None


async def test_no_metrics_means_no_cost(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    _, result = await poll_once(adapter, replicate, {"status": "succeeded", "metrics": {}})
    assert result.status == "completed" and result.cost is None


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        ("NSFW content detected in the prompt.", Failure.REJECTED),
        ("Prediction timed out", Failure.TIMED_OUT),
        ("upstream TIMEOUT after 1800s", Failure.TIMED_OUT),
        (None, Failure.REJECTED),
    ],
)
async def test_failed_predictions_map_to_our_failure_classes(
    adapter: ReplicateProvider, replicate: FakeReplicate, error: str | None, failure: Failure
) -> None:
    _, result = await poll_once(adapter, replicate, {"status": "failed", "error": error})
    assert result.status == "failed"
    assert result.failure is failure
    assert result.error == (error or "no reason given")
    assert result.cost is not None and "predict_time" in result.cost["metrics"]


async def test_a_prediction_walks_through_its_script(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    prediction_id, job = await submitted(adapter, request())
    seen = [await adapter.poll(prediction_id, job) for _ in range(4)]
    assert [(r.status, r.progress) for r in seen] == [
        ("running", 0),
        ("running", 50),
        ("completed", 100),
        ("completed", 100),
    ]


async def test_a_prediction_can_move_by_time(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    replicate.queue_seconds, replicate.run_seconds = 0.1, 0.1
    prediction_id, job = await submitted(adapter, request())
    assert (await adapter.poll(prediction_id, job)).progress == 0
    await asyncio.sleep(0.12)
    assert (await adapter.poll(prediction_id, job)).progress == 50
    await asyncio.sleep(0.12)
    assert (await adapter.poll(prediction_id, job)).status == "completed"


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "retryable"),
    [(429, True), (500, True), (503, True), ("timeout", True), (404, False), (422, False)],
)
async def test_submit_errors_are_classified(
    adapter: ReplicateProvider, replicate: FakeReplicate, fault: int | str, retryable: bool
) -> None:
    replicate.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request())
    assert raised.value.retryable is retryable
    assert REPLICATE_TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    ("fault", "retryable"), [(429, True), (500, True), ("timeout", True), (404, False)]
)
async def test_poll_errors_are_classified(
    adapter: ReplicateProvider, replicate: FakeReplicate, fault: int | str, retryable: bool
) -> None:
    prediction_id, job = await submitted(adapter, request())
    replicate.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.poll(prediction_id, job)
    assert raised.value.retryable is retryable


async def test_a_wrong_token_is_not_retried(replicate: FakeReplicate, tmp_path: Path) -> None:
    adapter = ReplicateProvider(
        settings(tmp_path, replicate.url, replicate_api_token="r8_wrong_token")
    )
    try:
        with pytest.raises(ProviderError) as raised:
            await adapter.submit(request())
    finally:
        await adapter.aclose()
    assert raised.value.retryable is False and raised.value.status == 401
    assert "r8_wrong_token" not in str(raised.value)


async def test_the_fake_refuses_a_body_without_input(replicate: FakeReplicate) -> None:
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{replicate.url}/v1/models/{MODEL}/predictions",
            json={"prompt": "no input object"},
            headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"},
        )
    assert answer.status_code == 422
    assert replicate.predictions == {}


async def test_a_submission_without_an_id_is_not_retried(
    adapter: ReplicateProvider, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_id(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"status": "starting"}

    monkeypatch.setattr(adapter._http, "json", no_id)
    with pytest.raises(ProviderError) as raised:
        await adapter.submit(request())
    assert raised.value.retryable is False


def test_an_adapter_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="REPLICATE_API_TOKEN"):
        ReplicateProvider(Settings(data_dir=tmp_path, replicate_api_token=None))


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_posts_to_the_cancel_url_and_tolerates_a_finished_prediction(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    prediction_id, job = await submitted(adapter, request())
    await adapter.poll(prediction_id, job)  # starting
    await adapter.cancel(prediction_id, job)
    [call] = replicate.calls("POST")[1:]
    assert call.path == f"/v1/predictions/{prediction_id}/cancel"
    assert call.headers["authorization"] == f"Bearer {REPLICATE_TOKEN}"
    result = await adapter.poll(prediction_id, job)
    assert (result.status, result.failure) == ("failed", Failure.UNAVAILABLE)
    await adapter.cancel(prediction_id, job)  # already finished: answered unchanged
    await adapter.cancel(uuid.uuid4().hex, request())  # never known: 404, nothing to stop
    replicate.faults.append(409)
    await adapter.cancel(prediction_id, job)  # any other refusal: nothing to stop either
    assert len(replicate.calls("POST")) == 5


@pytest.mark.parametrize("fault", [429, 500, "timeout"])
async def test_a_retryable_cancel_error_propagates(
    adapter: ReplicateProvider, replicate: FakeReplicate, fault: int | str
) -> None:
    prediction_id, job = await submitted(adapter, request())
    replicate.faults.append(fault)
    with pytest.raises(ProviderError) as raised:
        await adapter.cancel(prediction_id, job)
    assert raised.value.retryable is True
    if fault != "timeout":  # a slow answer still cancels on the fake's side
        assert not replicate.predictions[prediction_id].canceled


# --- following the URLs Replicate returned ---------------------------------------------------


async def test_a_job_follows_its_urls_when_the_configured_api_changes(
    replicate: FakeReplicate, tmp_path: Path
) -> None:
    first = ReplicateProvider(settings(tmp_path, replicate.url))
    prediction_id, job = await submitted(first, request())
    await first.aclose()
    with served_replicate() as elsewhere:
        later = ReplicateProvider(settings(tmp_path, elsewhere.url))
        try:
            assert (await later.poll(prediction_id, job)).status == "running"
            await later.cancel(prediction_id, job)
        finally:
            await later.aclose()
        assert elsewhere.requests == []
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in replicate.requests] == [
        ("POST", "predictions"),
        ("GET", prediction_id),
        ("POST", "cancel"),
    ]
    assert replicate.predictions[prediction_id].canceled


async def test_the_returned_urls_are_followed_exactly(
    adapter: ReplicateProvider, replicate: FakeReplicate
) -> None:
    prediction_id, job = await submitted(adapter, request())
    # Replicate may point elsewhere than the documented path: follow it, do not rebuild it.
    moved = GenerationRequest(
        **{**job.__dict__, "state": {**job.state, "get": f"{replicate.url}/v1/predictions/x"}}
    )
    with pytest.raises(ProviderError) as raised:
        await adapter.poll(prediction_id, moved)
    assert raised.value.status == 404
    assert replicate.calls("GET")[-1].path == "/v1/predictions/x"


async def test_without_urls_the_documented_paths_are_used(
    adapter: ReplicateProvider, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    prediction_id, job = await submitted(adapter, request())
    real = adapter._http.json

    async def without_urls(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = await real(*args, **kwargs)
        answer.pop("urls")
        return answer

    monkeypatch.setattr(adapter._http, "json", without_urls)
    submission = await adapter.submit(request())
    base = f"{replicate.url}/v1/predictions/{submission.provider_job_id}"
    assert submission.state == {"get": base, "cancel": f"{base}/cancel"}
    legacy = GenerationRequest(**{**job.__dict__, "state": {}})
    assert (await adapter.poll(prediction_id, legacy)).status == "running"
    assert replicate.calls("GET")[-1].path == f"/v1/predictions/{prediction_id}"


# --- the fake's secret and webhooks ----------------------------------------------------------


async def test_the_secret_endpoint_answers_the_constant(replicate: FakeReplicate) -> None:
    async with httpx.AsyncClient(base_url=replicate.url) as client:
        path = "/v1/webhooks/default/secret"
        answer = await client.get(path, headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"})
        refused = await client.get(path, headers={"Authorization": "Bearer r8_nope"})
    assert answer.json() == {"key": WEBHOOK_SECRET}
    assert WEBHOOK_SECRET.startswith("whsec_")
    assert refused.status_code == 401


def test_sign_gives_headers_the_standard_library_verifies() -> None:
    body = b'{"id":"p1","status":"succeeded"}'
    headers = sign(body, WEBHOOK_SECRET, msg_id="msg-1")
    assert headers["webhook-id"] == "msg-1"
    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == {"id": "p1", "status": "succeeded"}
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(body + b" ", headers)


class Receiver:
    """A webhook endpoint that checks signatures as Rendio does, and keeps what it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.url = ""

    async def hook(self, request: Request) -> Response:
        try:
            self.received.append(
                Webhook(WEBHOOK_SECRET).verify(await request.body(), dict(request.headers))
            )
        except WebhookVerificationError:
            return Response(status_code=401)
        return Response(status_code=204)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    port = free_port()
    hooks.url = f"http://127.0.0.1:{port}/hook"
    with ServedApp(Starlette(routes=[Route("/hook", hooks.hook, methods=["POST"])]), port):
        yield hooks


async def wait_for_deliveries(replicate: FakeReplicate, count: int) -> None:
    for _ in range(100):
        if len(replicate.deliveries) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} deliveries expected, got {replicate.deliveries}")


async def test_a_timed_prediction_sends_a_signed_webhook_when_it_finishes(
    adapter: ReplicateProvider, replicate: FakeReplicate, receiver: Receiver
) -> None:
    receiver.received.clear()
    replicate.run_seconds = 0.05
    replicate.outcome = {"status": "failed", "error": "Prediction timed out"}
    prediction_id, _ = await submitted(adapter, request(webhook_url=receiver.url))
    await wait_for_deliveries(replicate, 1)
    [prediction] = receiver.received
    assert (prediction["id"], prediction["status"]) == (prediction_id, "failed")
    assert prediction["error"] == "Prediction timed out"
    assert replicate.deliveries == [204]

    replicate.forge_webhooks = True
    replicate.outcome = "succeeded"
    await adapter.submit(request(webhook_url=receiver.url))
    await wait_for_deliveries(replicate, 2)
    assert replicate.deliveries == [204, 401]
    assert len(receiver.received) == 1


async def test_cancelling_a_timed_prediction_sends_its_webhook_once(
    adapter: ReplicateProvider, replicate: FakeReplicate, receiver: Receiver
) -> None:
    receiver.received.clear()
    replicate.run_seconds = 0.15
    prediction_id, job = await submitted(adapter, request(webhook_url=receiver.url))
    await adapter.cancel(prediction_id, job)
    await wait_for_deliveries(replicate, 1)
    assert [p["status"] for p in receiver.received] == ["canceled"]
    await asyncio.sleep(0.2)  # past the timeline's end: no second delivery
    assert replicate.deliveries == [204]
    assert (await adapter.poll(prediction_id, job)).failure is Failure.UNAVAILABLE
