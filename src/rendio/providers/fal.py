"""fal.ai's queue API (`RENDIO_FAL_KEY`, `RENDIO_FAL_QUEUE_URL`).

A submission answers with its own `status_url`, `response_url` and `cancel_url`; they are kept
on the job and followed exactly as returned (fal builds them from the owner and app only, not
the endpoint path, so they cannot be rebuilt from the model id). A webhook, when the service
has a public URL, is asked for with `?fal_webhook=`. fal keeps a result for as little as six
minutes, so the runner copies it as soon as a look finds it done.

The model's input is built from the job (prompt, duration, aspect ratio, the image for
image-to-video) plus the catalog's `options.input` (fixed fields a model needs);
`options.duration_suffix` (e.g. "s") formats the duration as the model expects it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from rendio.config import Settings
from rendio.providers.base import (
    Download,
    Failure,
    GenerationRequest,
    PollResult,
    ProviderError,
    Submission,
)
from rendio.providers.http import ProviderHttp, text_of

# fal's `error_type` values that are about time, and about fal's own machinery.
_TIMED_OUT = {"request_timeout", "startup_timeout"}
_UNAVAILABLE = {"runner_disconnected", "runner_scheduling_failure", "internal_error"}


class FalProvider:
    name = "fal"
    calls_back = True

    def __init__(self, settings: Settings) -> None:
        assert settings.fal_key is not None  # offered only when keyed
        self._queue_url = settings.fal_queue_url.rstrip("/")
        self._http = ProviderHttp(
            "fal",
            self._queue_url,
            {"Authorization": f"Key {settings.fal_key.get_secret_value()}"},
            timeout=settings.provider_timeout,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        url = f"{self._queue_url}/{request.provider_model_id.strip('/')}"
        if request.webhook_url is not None:
            url += "?" + urlencode({"fal_webhook": request.webhook_url})
        body = await self._http.json("POST", url, json=_input(request))
        request_id = body.get("request_id")
        urls = {name: body.get(name) for name in ("status_url", "response_url", "cancel_url")}
        if not isinstance(request_id, str) or not all(isinstance(u, str) for u in urls.values()):
            raise ProviderError("fal answered a submission without its URLs", retryable=False)
        return Submission(request_id, urls)

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        status = await self._http.json("GET", _url(request, "status_url"), params={"logs": 0})
        state = status.get("status")
        if state == "IN_QUEUE":
            return PollResult("running", progress=0)
        if state == "IN_PROGRESS":
            return PollResult("running", progress=50)
        if state != "COMPLETED":
            return PollResult("running")  # unknown: keep looking
        cost = _cost(status)
        if status.get("error"):
            return PollResult(
                "failed",
                error=f"{status.get('error_type') or 'error'}: {text_of(status['error'])}",
                failure=_failure(status.get("error_type")),
                cost=cost,
            )
        return await self._result(request, cost)

    async def _result(self, request: GenerationRequest, cost: dict[str, Any] | None) -> PollResult:
        try:
            result = await self._http.json("GET", _url(request, "response_url"))
        except ProviderError as error:
            if error.retryable:
                raise
            # The model's own refusal (e.g. 422 with its validation detail).
            return PollResult("failed", error=str(error), failure=Failure.REJECTED, cost=cost)
        video = result.get("video")
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            return PollResult(
                "failed", error="fal's result has no video URL", failure=Failure.UNAVAILABLE
            )
        return PollResult("completed", progress=100, download=Download(url), cost=cost)

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        # OK, CANCELLATION_REQUESTED, ALREADY_COMPLETED and NOT_FOUND all mean "nothing to do".
        try:
            await self._http.call("PUT", _url(request, "cancel_url"))
        except ProviderError as error:
            if error.retryable:
                raise

    async def aclose(self) -> None:
        await self._http.aclose()


def _input(request: GenerationRequest) -> dict[str, Any]:
    suffix = str(request.options.get("duration_suffix", ""))
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "duration": f"{request.duration}{suffix}",
        "aspect_ratio": request.aspect_ratio,
    }
    if request.image_url is not None:
        body["image_url"] = request.image_url
    fixed = request.options.get("input")
    if isinstance(fixed, dict):
        body.update(fixed)
    return body


def _url(request: GenerationRequest, name: str) -> str:
    url = request.state.get(name)
    if not isinstance(url, str):
        raise ProviderError(f"the job has no fal {name} to follow", retryable=False)
    return url


def _failure(error_type: Any) -> Failure:
    if error_type in _TIMED_OUT:
        return Failure.TIMED_OUT
    if error_type in _UNAVAILABLE:
        return Failure.UNAVAILABLE
    return Failure.REJECTED


def _cost(status: dict[str, Any]) -> dict[str, Any] | None:
    metrics = status.get("metrics")
    return {"metrics": metrics} if isinstance(metrics, dict) and metrics else None
