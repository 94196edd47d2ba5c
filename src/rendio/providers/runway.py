"""Runway's task API (`RENDIO_RUNWAY_API_KEY`, `RENDIO_RUNWAY_API_URL`,
`RENDIO_RUNWAY_API_VERSION`).

What is special about Runway:
* There are no webhooks: a job is only ever polled (`GET /v1/tasks/{id}`), so the request's
  `webhook_url` is ignored.
* `THROTTLED` is not an error: the account is at its concurrency limit and the task waits its
  turn, like `PENDING`. Only the job's own deadline ends that wait.
* When that deadline passes (or the job is abandoned), `DELETE /v1/tasks/{id}` cancels the
  task; a task Runway no longer knows (404) is already gone, which is what we wanted. Runway
  refunds nothing for a task it saw `RUNNING`, so cancelling early is cheaper than late.
* A finished task's `output` URLs are public and expire within a day or two, so they are
  fetched without our key and as soon as the job is seen done.
* Every request carries the API version (`X-Runway-Version`); the answer shapes depend on it.

The base URL a task was created on is kept with the job (`api_url`), so a later poll or cancel
follows the task to the deployment it was sent to, whatever the configuration says by then.
"""

from __future__ import annotations

import math
from typing import Any

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

# Runway wants pixel ratios, not aspect ratios: (aspect ratio, resolution) -> `ratio`.
RATIOS: dict[tuple[str, str], str] = {
    ("16:9", "720p"): "1280:720",
    ("9:16", "720p"): "720:1280",
    ("1:1", "720p"): "960:960",
    ("16:9", "1080p"): "1920:1080",
    ("9:16", "1080p"): "1080:1920",
    ("1:1", "1080p"): "1440:1440",
}

# Runway counts `promptText` in UTF-16 code units (JavaScript string length).
PROMPT_LIMIT = 1000

# failureCode classes (docs.dev.runwayml.com/errors/task-failures): Runway's own machinery
# broke; anything else (safety refusals, bad assets, codes not documented) is a refusal.
_UNAVAILABLE_CODES = ("INTERNAL", "INPUT_PREPROCESSING.INTERNAL")

_WAITING = frozenset({"PENDING", "THROTTLED"})


class RunwayProvider:
    name = "runway"
    calls_back = False

    def __init__(self, settings: Settings) -> None:
        if settings.runway_api_key is None:  # offered only when keyed
            raise ValueError("RENDIO_RUNWAY_API_KEY is not set")
        self._api_url = settings.runway_api_url.rstrip("/")
        self._http = ProviderHttp(
            self.name,
            self._api_url,
            {
                "Authorization": f"Bearer {settings.runway_api_key.get_secret_value()}",
                "X-Runway-Version": settings.runway_api_version,
            },
            timeout=settings.provider_timeout,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        path, body = _create(request)
        answer = await self._http.json("POST", f"{self._api_url}{path}", json=body)
        task_id = answer.get("id")
        if not isinstance(task_id, str) or not task_id:
            # Not retried: the task may well exist, and a second one would be paid for too.
            raise ProviderError("runway answered a submission without a task id", retryable=False)
        return Submission(task_id, {"api_url": self._api_url})

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        task = await self._http.json("GET", self._task_url(provider_job_id, request))
        return _result(task)

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        try:
            await self._http.call("DELETE", self._task_url(provider_job_id, request))
        except ProviderError as error:
            if error.status != 404:  # already gone: nothing to cancel
                raise

    async def aclose(self) -> None:
        await self._http.aclose()

    def _task_url(self, provider_job_id: str, request: GenerationRequest) -> str:
        """The task on the deployment it was created on (the configured one for jobs
        submitted before the URL was kept)."""
        api_url = request.state.get("api_url")
        base = api_url.rstrip("/") if isinstance(api_url, str) and api_url else self._api_url
        return f"{base}/v1/tasks/{provider_job_id}"


def _create(request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """The endpoint and body that start this job: image-to-video when it has an image."""
    body: dict[str, Any] = {
        "model": request.provider_model_id,
        "ratio": _ratio(request),
        "duration": request.duration,
    }
    prompt = prompt_text(request.prompt)
    if request.image_url is None:
        return "/v1/text_to_video", {**body, "promptText": prompt}
    body["promptImage"] = request.image_url
    if prompt:  # optional for image-to-video, and an empty one is refused
        body["promptText"] = prompt
    return "/v1/image_to_video", body


def _ratio(request: GenerationRequest) -> str:
    ratio = RATIOS.get((request.aspect_ratio, request.resolution))
    if ratio is None:
        raise ProviderError(
            f"runway has no ratio for {request.aspect_ratio} at {request.resolution}",
            retryable=False,
        )
    return ratio


def prompt_text(prompt: str) -> str:
    """The prompt cut to Runway's limit, counted as Runway counts it (UTF-16 units), never
    splitting a character (a surrogate pair cut in half is dropped whole)."""
    encoded = prompt.encode("utf-16-le")
    if len(encoded) <= PROMPT_LIMIT * 2:
        return prompt
    return encoded[: PROMPT_LIMIT * 2].decode("utf-16-le", errors="ignore")


def _result(task: dict[str, Any]) -> PollResult:
    """Every status Runway documents, mapped explicitly; anything else means keep polling."""
    status = task.get("status")
    if status in _WAITING:
        return PollResult("running", progress=0)
    if status == "RUNNING":
        return PollResult("running", progress=_progress(task.get("progress")))
    if status == "SUCCEEDED":
        return _succeeded(task)
    if status == "FAILED":
        code = task.get("failureCode")
        reason = text_of(task.get("failure") or "no reason given")
        return PollResult(
            "failed",
            error=f"{code or 'FAILED'}: {reason}",
            failure=_failure(code),
            cost=_cost(task),
        )
    if status == "CANCELLED":
        return PollResult(
            "failed",
            error="runway cancelled the task",
            failure=Failure.UNAVAILABLE,
            cost=_cost(task),
        )
    return PollResult("running")  # unknown or missing: keep looking


def _succeeded(task: dict[str, Any]) -> PollResult:
    output = task.get("output")
    url = output[0] if isinstance(output, list) and output else None
    if not isinstance(url, str) or not url:
        return PollResult(
            "failed",
            error="runway's finished task has no output URL",
            failure=Failure.UNAVAILABLE,
            cost=_cost(task),
        )
    # No headers: the URL is public (and expiring); our key must not travel to a file host.
    return PollResult("completed", progress=100, download=Download(url), cost=_cost(task))


def _progress(value: Any) -> int:
    """Runway's 0..1 fraction as a percentage below 100 (100 is for a finished job)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 0
    return max(0, min(99, round(value * 100)))


def _failure(code: Any) -> Failure:
    if isinstance(code, str) and any(
        code == prefix or code.startswith(f"{prefix}.") for prefix in _UNAVAILABLE_CODES
    ):
        return Failure.UNAVAILABLE
    return Failure.REJECTED


def _cost(task: dict[str, Any]) -> dict[str, Any] | None:
    cost = task.get("cost")
    credits = cost.get("credits") if isinstance(cost, dict) else None
    return {"credits": credits} if credits is not None else None
