"""A local Replicate predictions API over real HTTP: `POST /v1/models/{owner}/{name}/predictions`,
`GET /v1/predictions/{id}`, `POST /v1/predictions/{id}/cancel` and `GET
/v1/webhooks/default/secret`, with Replicate's prediction shape, its bearer-token check,
injected faults, output files that expire, and Standard Webhooks deliveries.

A prediction's status moves one of two ways, fixed when it is created:
* By script (the default): one step per GET, then it stays on the last step. A step is a
  status (`"processing"`) or a dict of fields (`{"status": "failed", "error": "…"}`); the fake
  fills in what Replicate would add (`output`, `metrics`, timestamps) and the step's own fields
  win, None included (`{"status": "succeeded", "output": None}`).
* By time, when `run_seconds` is set: `starting` for `queue_seconds`, `processing` for
  `run_seconds`, then `outcome` (a step, as above). Only these predictions send webhooks: when
  one created with `webhook` finishes (or is cancelled first), its final object is POSTed there,
  signed with `WEBHOOK_SECRET` (or a forger's secret with `forge_webhooks`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.apple import ServedApp
from tests.fakes.callbacks import post_webhook
from tests.helpers.processes import free_port

REPLICATE_TOKEN = "r8_test_token"
# The account's signing secret (`whsec_` + base64 of the key), as the secret endpoint answers.
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"replicate-fake-signing-key-0001").decode()
# What `forge_webhooks` signs with: well-formed, but not the account's.
FORGED_SECRET = "whsec_" + base64.b64encode(b"someone-else-s-signing-key-0001").decode()
# Replicate reports the version even for an official model's prediction.
VERSION = "5b1c2f1e0d9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c"

Step = str | dict[str, Any]

DEFAULT_SCRIPT: tuple[Step, ...] = ("starting", "processing", "succeeded")
TERMINAL = frozenset({"succeeded", "failed", "canceled", "aborted"})
_METRICS = {"predict_time": 12.5, "total_time": 14.0}


@dataclass
class ReplicateCall:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    webhook: str | None
    webhook_events_filter: list[str] | None
    script: list[Step]
    created_at: str
    created: float  # monotonic
    # Set: status by time (`queue_seconds`, then `run_seconds`, then `outcome`).
    run_seconds: float | None = None
    queue_seconds: float = 0.0
    outcome: Step = "succeeded"
    output_list: bool = False
    # Index of the step the last GET answered (-1: never looked at).
    step: int = -1
    canceled: bool = False
    delivered: bool = False

    def current(self, now: float) -> dict[str, Any]:
        """The step the prediction is on (a dict with at least `status`); a cancelled one
        stays cancelled whatever its script or timeline says."""
        if self.canceled:
            return {"status": "canceled"}
        if self.run_seconds is None:
            step = self.script[max(0, min(self.step, len(self.script) - 1))]
        else:
            elapsed = now - self.created
            if elapsed < self.queue_seconds:
                step = "starting"
            elif elapsed < self.queue_seconds + self.run_seconds:
                step = "processing"
            else:
                step = self.outcome
        return {"status": step} if isinstance(step, str) else dict(step)


@dataclass
class FakeReplicate:
    """What tests arrange (scripts or timelines, faults, output shape and bytes, expiry,
    forgery) and inspect (predictions, requests, webhook deliveries)."""

    url: str = ""
    api_token: str = REPLICATE_TOKEN
    # The script of predictions created from now on; `predictions[id].script` changes one's.
    script: list[Step] = field(default_factory=lambda: list(DEFAULT_SCRIPT))
    # Set: predictions created from now on move by time instead of by script.
    run_seconds: float | None = None
    queue_seconds: float = 0.0
    outcome: Step = "succeeded"
    # A succeeded prediction's `output` as `[url]` instead of `url`.
    output_list: bool = False
    # One consumed per API request (not file downloads): an HTTP status to answer, or
    # "timeout" (answer normally, but only after `timeout_seconds`).
    faults: list[int | str] = field(default_factory=list)
    timeout_seconds: float = 2.0
    video_bytes: bytes = b"\x00\x00\x00\x18ftypmp42 fake replicate video"
    # Prediction ids whose output file answers 404 (Replicate deleted it after an hour).
    expired: set[str] = field(default_factory=set)
    forge_webhooks: bool = False
    predictions: dict[str, Prediction] = field(default_factory=dict)
    requests: list[ReplicateCall] = field(default_factory=list)
    # The HTTP status each webhook delivery got (0: no answer).
    deliveries: list[int] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # --- what tests use ------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"replicate_api_token": self.api_token, "replicate_api_url": self.url}

    def env(self) -> dict[str, str]:
        return {f"RENDIO_{k.upper()}": str(v) for k, v in self.settings().items()}

    def file_url(self, prediction_id: str) -> str:
        return f"{self.url}/files/{prediction_id}.mp4"

    def expire(self, prediction_id: str) -> None:
        self.expired.add(prediction_id)

    def calls(self, method: str | None = None) -> list[ReplicateCall]:
        return [call for call in self.requests if method is None or call.method == method]

    def shape(self, prediction: Prediction) -> dict[str, Any]:
        """The prediction as Replicate answers it now."""
        return self._shape(prediction, prediction.current(time.monotonic()))

    def reset(self) -> None:
        self.script = list(DEFAULT_SCRIPT)
        self.run_seconds = None
        self.queue_seconds = 0.0
        self.outcome = "succeeded"
        self.output_list = False
        self.faults.clear()
        self.timeout_seconds = 2.0
        self.video_bytes = b"\x00\x00\x00\x18ftypmp42 fake replicate video"
        self.expired.clear()
        self.forge_webhooks = False
        self.predictions.clear()
        self.requests.clear()
        self.deliveries.clear()

    # --- the API -------------------------------------------------------------------------
    async def _refusal(self, request: Request) -> Response | None:
        """Log the request, then check the token, then apply the next fault."""
        body: dict[str, Any] | None = None
        raw = await request.body()
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        self.requests.append(
            ReplicateCall(request.method, request.url.path, dict(request.headers), body)
        )
        if request.headers.get("authorization") != f"Bearer {self.api_token}":
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                await asyncio.sleep(self.timeout_seconds)
            else:
                return _problem(int(fault), "Injected", f"injected {fault}")
        return None

    async def create(self, request: Request) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        body = self.requests[-1].body
        if body is None or not isinstance(body.get("input"), dict):
            return _problem(422, "Input validation failed", "input: input is required")
        events = body.get("webhook_events_filter")
        prediction = Prediction(
            id=uuid.uuid4().hex[:26],
            model=f"{request.path_params['owner']}/{request.path_params['name']}",
            input=body["input"],
            webhook=body.get("webhook"),
            webhook_events_filter=events if isinstance(events, list) else None,
            script=list(self.script),
            created_at=_now(),
            created=time.monotonic(),
            run_seconds=self.run_seconds,
            queue_seconds=self.queue_seconds,
            outcome=self.outcome,
            output_list=self.output_list,
        )
        self.predictions[prediction.id] = prediction
        if prediction.webhook is not None and prediction.run_seconds is not None:
            self._spawn(self._deliver_when_done(prediction))
        return JSONResponse(self.shape(prediction), status_code=201)

    async def get(self, request: Request) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        prediction = self.predictions.get(request.path_params["prediction_id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction.run_seconds is None:
            prediction.step = min(prediction.step + 1, len(prediction.script) - 1)
        return JSONResponse(self.shape(prediction))

    async def cancel(self, request: Request) -> Response:
        """Cancel one still starting or processing; a finished one is answered unchanged."""
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        prediction = self.predictions.get(request.path_params["prediction_id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction.current(time.monotonic()).get("status") not in TERMINAL:
            prediction.canceled = True
            if prediction.webhook is not None and prediction.run_seconds is not None:
                self._spawn(self._deliver(prediction))
        return JSONResponse(self.shape(prediction))

    async def secret(self, request: Request) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        return JSONResponse({"key": WEBHOOK_SECRET})

    async def file(self, request: Request) -> Response:
        prediction_id = request.path_params["prediction_id"]
        if prediction_id not in self.predictions or prediction_id in self.expired:
            return Response("Not found", status_code=404)
        return Response(self.video_bytes, media_type="video/mp4")

    def _shape(self, prediction: Prediction, step: dict[str, Any]) -> dict[str, Any]:
        """Replicate's fields for the step's status, then the step's own."""
        status = step.get("status")
        base = f"{self.url}/v1/predictions/{prediction.id}"
        shape: dict[str, Any] = {
            "id": prediction.id,
            "model": prediction.model,
            "version": VERSION,
            "status": status,
            "input": prediction.input,
            "output": None,
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": prediction.created_at,
            "started_at": None,
            "completed_at": None,
            "urls": {
                "get": base,
                "cancel": f"{base}/cancel",
                "stream": f"{self.url}/stream/{prediction.id}",
                "web": f"https://replicate.com/p/{prediction.id}",
            },
        }
        if status in ("processing", "succeeded", "failed", "canceled"):
            shape["started_at"] = prediction.created_at
            shape["logs"] = "Generating video...\n"
        if status in TERMINAL:
            shape["completed_at"] = _now()
        if status == "succeeded":
            url = self.file_url(prediction.id)
            shape["output"] = [url] if prediction.output_list else url
            shape["metrics"] = dict(_METRICS)
        elif status == "failed":
            shape["error"] = "The model failed to generate a video."
            shape["metrics"] = dict(_METRICS)
        shape.update(step)
        return shape

    # --- webhooks ------------------------------------------------------------------------
    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_when_done(self, prediction: Prediction) -> None:
        assert prediction.run_seconds is not None
        await asyncio.sleep(prediction.queue_seconds + prediction.run_seconds)
        # A timer may fire a hair before the timeline's end: wait until it says so too.
        while prediction.current(time.monotonic())["status"] in ("starting", "processing"):
            await asyncio.sleep(0.005)
        await self._deliver(prediction)

    async def _deliver(self, prediction: Prediction) -> None:
        """POST the final prediction to its webhook, once (Replicate retries on failure,
        which the tests do not need). Only the `completed` event is sent; a filter without
        it asks for none."""
        if prediction.delivered or prediction.webhook is None:
            return
        events = prediction.webhook_events_filter
        if events is not None and "completed" not in events:
            return
        prediction.delivered = True
        body = json.dumps(self.shape(prediction)).encode()
        headers = sign(body, FORGED_SECRET if self.forge_webhooks else WEBHOOK_SECRET)
        self.deliveries.append(await post_webhook(prediction.webhook, body, headers))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models/{owner}/{name}/predictions", self.create, methods=["POST"]),
                Route("/v1/predictions/{prediction_id}", self.get, methods=["GET"]),
                Route("/v1/predictions/{prediction_id}/cancel", self.cancel, methods=["POST"]),
                Route("/v1/webhooks/default/secret", self.secret, methods=["GET"]),
                Route("/files/{prediction_id}.mp4", self.file, methods=["GET"]),
            ]
        )


def sign(
    body: bytes, secret: str, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """The headers of a Standard Webhooks delivery of `body` signed with `secret` (`msg_id`:
    the same on a redelivery; `at`: when it was signed, for tolerance tests)."""
    signed_at = (at or datetime.now(UTC)).astimezone(UTC)
    message_id = msg_id or f"msg_{uuid.uuid4().hex}"
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, signed_at, body.decode()),
        "content-type": "application/json",
    }


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    """Replicate's error shape (RFC 7807 problem details)."""
    return JSONResponse(
        {"title": title, "detail": detail, "status": status},
        status_code=status,
        media_type="application/problem+json",
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def served_replicate() -> Iterator[FakeReplicate]:
    """A FakeReplicate on a free local port; its `url` is the API's base URL."""
    fake = FakeReplicate()
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    with ServedApp(fake.app(), port):
        yield fake
