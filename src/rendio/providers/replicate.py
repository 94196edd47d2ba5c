"""Replicate's predictions API (`RENDIO_REPLICATE_API_TOKEN`, `RENDIO_REPLICATE_API_URL`).

What is special about Replicate:
* Only official models are used, so a job is created on the model itself (`POST
  /v1/models/{owner}/{name}/predictions`, `owner/name` being the catalog's model id) and
  never pinned to a version hash that the owner may retire.
* The answer carries its own `urls.get` and `urls.cancel`; they are kept on the job and
  followed exactly as returned, so a later poll or cancel reaches the prediction wherever it was
  created, whatever the configuration says by then.
* Models name their image input differently (`image`, `first_frame_image`, `start_image`…):
  the catalog's `options.image_field` says which, and `options.input` adds fixed fields a
  model needs. The image is passed as its URL; Replicate fetches it, we never do.
* A webhook, when the service has a public URL, is asked for with
  `webhook_events_filter: ["completed"]` only: the start, output and logs events would each
  cost a signature check and a look for nothing.
* `aborted` (the deadline passed before the prediction started; not charged) is a status the
  SDK does not know but the API sends: it is a time-out, not a refusal. A `failed` prediction
  is a refusal unless its error says it ran out of time (the 30-minute limit).
* Output files are public and deleted an hour after the prediction, so they are fetched
  without our token, as soon as the job is seen done.
"""

from __future__ import annotations

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

# Words in a failed prediction's error that mean it ran out of time rather than was refused.
_TIME_WORDS = ("timed out", "timeout")

# Documented statuses that mean "not finished": `starting` covers the queue and a cold boot.
_PROGRESS = {"starting": 0, "processing": 50}


class ReplicateProvider:
    name = "replicate"
    calls_back = True

    def __init__(self, settings: Settings) -> None:
        if settings.replicate_api_token is None:  # offered only when keyed
            raise ValueError("RENDIO_REPLICATE_API_TOKEN is not set")
        self._api_url = settings.replicate_api_url.rstrip("/")
        self._http = ProviderHttp(
            self.name,
            self._api_url,
            {"Authorization": f"Bearer {settings.replicate_api_token.get_secret_value()}"},
            timeout=settings.provider_timeout,
        )

    async def submit(self, request: GenerationRequest) -> Submission:
        owner, model = _model(request.provider_model_id)
        body: dict[str, Any] = {"input": _input(request)}
        if request.webhook_url is not None:
            body["webhook"] = request.webhook_url
            body["webhook_events_filter"] = ["completed"]
        answer = await self._http.json(
            "POST", f"{self._api_url}/v1/models/{owner}/{model}/predictions", json=body
        )
        prediction_id = answer.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            # Not retried: the prediction may well exist, and a second one would be paid for too.
            raise ProviderError("replicate answered a prediction without an id", retryable=False)
        urls = answer.get("urls")
        urls = urls if isinstance(urls, dict) else {}
        fallback = self._prediction_url(prediction_id)
        return Submission(
            prediction_id,
            {
                "get": _text(urls.get("get")) or fallback,
                "cancel": _text(urls.get("cancel")) or f"{fallback}/cancel",
            },
        )

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        url = _text(request.state.get("get")) or self._prediction_url(provider_job_id)
        return _result(await self._http.json("GET", url))

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        url = (
            _text(request.state.get("cancel")) or f"{self._prediction_url(provider_job_id)}/cancel"
        )
        try:
            await self._http.call("POST", url)
        except ProviderError as error:
            if error.retryable:
                raise
            # Otherwise it already finished or is unknown: nothing left to stop.

    async def aclose(self) -> None:
        await self._http.aclose()

    def _prediction_url(self, prediction_id: str) -> str:
        """Where a prediction lives when Replicate gave no URL for it (or the job kept none):
        the documented path on the configured API."""
        return f"{self._api_url}/v1/predictions/{prediction_id}"


def _model(model_id: str) -> tuple[str, str]:
    """`owner/name` of an official model; anything else is a catalog mistake, not retried."""
    owner, _, name = model_id.strip("/").partition("/")
    if not owner or not name or "/" in name or ":" in name:
        raise ProviderError(f"replicate model id {model_id!r} is not owner/name", retryable=False)
    return owner, name


def _input(request: GenerationRequest) -> dict[str, Any]:
    values: dict[str, Any] = {
        "prompt": request.prompt,
        "duration": int(request.duration),
        "aspect_ratio": request.aspect_ratio,
    }
    if request.image_url is not None:
        field = request.options.get("image_field", "image")
        values[field if isinstance(field, str) and field else "image"] = request.image_url
    fixed = request.options.get("input")
    if isinstance(fixed, dict):
        values.update(fixed)  # last: the catalog knows the model better than our defaults
    return values


def _result(prediction: dict[str, Any]) -> PollResult:
    """Every status Replicate documents, mapped explicitly; anything else means keep polling."""
    status = prediction.get("status")
    if isinstance(status, str) and status in _PROGRESS:
        return PollResult("running", progress=_PROGRESS[status])
    cost = _cost(prediction)
    if status == "succeeded":
        url = _output_url(prediction.get("output"))
        if url is None:
            return PollResult(
                "failed",
                error="replicate's prediction succeeded with no output",
                failure=Failure.UNAVAILABLE,
                cost=cost,
            )
        # No headers: the file URL is public (and expiring); our token must not travel there.
        return PollResult("completed", progress=100, download=Download(url), cost=cost)
    if status == "failed":
        error = text_of(prediction.get("error") or "no reason given")
        timed_out = any(word in error.lower() for word in _TIME_WORDS)
        return PollResult(
            "failed",
            error=error,
            failure=Failure.TIMED_OUT if timed_out else Failure.REJECTED,
            cost=cost,
        )
    if status == "canceled":
        return PollResult(
            "failed",
            error="replicate canceled the prediction",
            failure=Failure.UNAVAILABLE,
            cost=cost,
        )
    if status == "aborted":
        return PollResult(
            "failed",
            error="replicate aborted the prediction: its deadline passed before it started",
            failure=Failure.TIMED_OUT,
            cost=cost,
        )
    return PollResult("running")  # unknown or missing: keep looking


def _output_url(output: Any) -> str | None:
    """A video model's output: one URL, or a list whose first URL is the video."""
    if isinstance(output, list):
        output = next((item for item in output if isinstance(item, str) and item), None)
    return output if isinstance(output, str) and output else None


def _cost(prediction: dict[str, Any]) -> dict[str, Any] | None:
    """Replicate bills by time; its `metrics` (e.g. `predict_time`) are what the operator
    compares with the bill."""
    metrics = prediction.get("metrics")
    return {"metrics": metrics} if isinstance(metrics, dict) and metrics else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
