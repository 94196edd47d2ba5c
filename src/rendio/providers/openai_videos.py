"""OpenAI-compatible video gateways (`RENDIO_OPENAI_API_KEY`, `RENDIO_OPENAI_BASE_URL`).

OpenAI shut its own Videos API (Sora) down on 2026-09-24, but gateways such as LiteLLM and
new-api still serve the same `/v1/videos` shape, so this adapter speaks that shape to whatever
gateway the base URL (which includes `/v1`) names:
* a video is created with a **multipart/form-data** POST (prompt, model, seconds as a string,
  size as `WxH`); an image for image-to-video goes by reference (`input_reference[image_url]`),
  since we never fetch a user's image ourselves;
* the base URL a job was sent to is kept with the job and followed by every later call, so a
  job follows its gateway even after the configuration changes (gateways have lost jobs by
  polling a different deployment than the one that created them);
* the result is served by the gateway's `/videos/{id}/content`, which needs the API key, so
  the download (and the thumbnail's) carries the headers it needs;
* gateways word statuses their own way (`succeeded`, `processing`, `cancelled`, `expired`…);
  each known word is mapped explicitly and anything else means "keep polling".

Gateway webhooks are configured on the gateway account, not per request, so the request's
`webhook_url` is not sent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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

# (aspect ratio, resolution) → the `size` the Videos API accepts; nothing else is offered.
SIZES: dict[tuple[str, str], str] = {
    ("16:9", "720p"): "1280x720",
    ("9:16", "720p"): "720x1280",
    ("16:9", "1080p"): "1792x1024",
    ("9:16", "1080p"): "1024x1792",
}

_QUEUED = {"queued", "pending"}
_RUNNING = {"in_progress", "processing", "running"}
_COMPLETED = {"completed", "succeeded"}
_FAILED = {"failed"}
# Ended without a video and without a failure of the request itself.
_ENDED = {"cancelled", "canceled", "expired"}

# Words in a failure's `error.code` that say why it failed.
_REFUSED_WORDS = ("moderation", "policy", "safety")
_TIMEOUT_WORDS = ("timeout", "timed_out")


class OpenAiVideosProvider:
    name = "openai"

    def __init__(self, settings: Settings) -> None:
        assert settings.openai_api_key is not None  # offered only when keyed
        # A gateway calls back when its account is set up to, which its secret here implies.
        self.calls_back = settings.openai_webhook_secret is not None
        self._base_url = settings.openai_base_url.rstrip("/")
        self._authorization = f"Bearer {settings.openai_api_key.get_secret_value()}"
        self._http = ProviderHttp(
            "openai",
            self._base_url,
            {"Authorization": self._authorization},
            timeout=settings.provider_timeout,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        fields = _form(request)
        # Every field as a part without a file name: httpx then sends multipart/form-data,
        # which the Videos API requires, even when no file is attached.
        parts = [(name, (None, value)) for name, value in fields.items()]
        body = await self._http.json("POST", f"{self._base_url}/videos", files=parts)
        video_id = body.get("id")
        if not isinstance(video_id, str) or not video_id:
            # Something may have been created (and billed); trying again could make another.
            raise ProviderError("openai answered a creation without a video id", retryable=False)
        return Submission(video_id, {"base_url": self._base_url})

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        base = self._base(request)
        video = await self._http.json("GET", _video_url(base, provider_job_id))
        status = str(video.get("status") or "").lower()
        cost = _cost(video)
        if status in _QUEUED:
            return PollResult("running", progress=0, cost=cost)
        if status in _COMPLETED:
            return PollResult(
                "completed",
                progress=100,
                download=self._content(base, provider_job_id, "video"),
                thumbnail=self._content(base, provider_job_id, "thumbnail"),
                cost=cost,
            )
        if status in _FAILED:
            code, error = _error(video.get("error"))
            return PollResult("failed", error=error, failure=_failure(code), cost=cost)
        if status in _ENDED:
            return PollResult(
                "failed",
                error=f"the gateway reports the video {status}",
                failure=Failure.UNAVAILABLE,
                cost=cost,
            )
        if status in _RUNNING:
            return PollResult("running", progress=_progress(video.get("progress")), cost=cost)
        return PollResult("running", cost=cost)  # unknown or missing: keep looking

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        # A 404 (already gone) or another refusal (e.g. a video that can no longer be
        # deleted) leaves nothing for us to do; retryable errors are tried again.
        try:
            await self._http.call("DELETE", _video_url(self._base(request), provider_job_id))
        except ProviderError as error:
            if error.retryable:
                raise

    async def aclose(self) -> None:
        await self._http.aclose()

    def _base(self, request: GenerationRequest) -> str:
        """The gateway the job was sent to (the configured one for jobs that did not say)."""
        base = request.state.get("base_url")
        return base.rstrip("/") if isinstance(base, str) and base else self._base_url

    def _content(self, base: str, video_id: str, variant: str) -> Download:
        return Download(
            f"{_video_url(base, video_id)}/content?variant={variant}",
            headers={"Authorization": self._authorization, "Accept": "application/binary"},
        )


def _form(request: GenerationRequest) -> dict[str, str]:
    size = SIZES.get((request.aspect_ratio, request.resolution))
    if size is None:
        raise ProviderError(
            f"openai videos come in no size for {request.aspect_ratio} at {request.resolution}",
            retryable=False,
        )
    fields = {
        "prompt": request.prompt,
        "model": request.provider_model_id,
        "seconds": str(request.duration),
        "size": size,
    }
    if request.image_url is not None:
        fields["input_reference[image_url]"] = request.image_url
    return fields


def _video_url(base: str, video_id: str) -> str:
    # Gateways encode routing into ids (LiteLLM); quote so no id can change the path.
    return f"{base}/videos/{quote(video_id, safe='')}"


def _progress(value: Any) -> int | None:
    """A running video's progress, short of 100 (100 is for the video we have in hand)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(0, min(99, int(value)))


def _error(value: Any) -> tuple[str, str]:
    """The failure's code and the `code: message` text the job keeps."""
    if isinstance(value, dict):
        code = str(value.get("code") or "error")
        message = text_of(value.get("message") or "no message")
    else:
        code = "error"
        message = text_of(value) if value else "no message"
    return code, f"{code}: {message}"


def _failure(code: str) -> Failure:
    lowered = code.lower()
    if any(word in lowered for word in _REFUSED_WORDS):
        return Failure.REJECTED
    if any(word in lowered for word in _TIMEOUT_WORDS):
        return Failure.TIMED_OUT
    return Failure.UNAVAILABLE


def _cost(video: dict[str, Any]) -> dict[str, Any] | None:
    cost = {name: video[name] for name in ("usage", "cost") if video.get(name) is not None}
    return cost or None
