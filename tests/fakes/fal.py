"""A local fal.ai queue over real HTTP: submissions answered with their own status, result and
cancel URLs (owner/app only, as fal builds them), statuses that move with time, results that
expire, injected faults, and webhooks signed with Ed25519 whose public key the fake serves as
a JWKS — as fal documents them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.apple import ServedApp
from tests.fakes.callbacks import post_webhook
from tests.helpers.processes import free_port

FAL_KEY = "fal-test-key"
USER_ID = "fal-user-1"


@dataclass
class FalRequest:
    request_id: str
    app: str
    body: dict[str, Any]
    webhook: str | None
    submitted: float
    queue_seconds: float
    run_seconds: float
    # "ok", "error" (fal's own failure, with error_type) or "model_error" (the model's 422)
    outcome: str
    error_type: str = "request_timeout"
    cancelled: bool = False
    # Wall-clock submission time (for measuring how late we notice the completion).
    submitted_wall: float = 0.0

    @property
    def completed_wall(self) -> float:
        return self.submitted_wall + self.queue_seconds + self.run_seconds

    def status(self, now: float) -> str:
        if self.cancelled:
            return "COMPLETED"
        elapsed = now - self.submitted
        if elapsed < self.queue_seconds:
            return "IN_QUEUE"
        if elapsed < self.queue_seconds + self.run_seconds:
            return "IN_PROGRESS"
        return "COMPLETED"


@dataclass
class FakeFal:
    """What tests arrange (the next requests' timing and outcome, faults, expiry) and inspect
    (requests, webhook deliveries)."""

    url: str = ""
    queue_seconds: float = 0.0
    run_seconds: float = 0.3
    # When set, each new request runs for a time drawn uniformly from this range instead.
    run_seconds_range: tuple[float, float] | None = None
    outcome: str = "ok"
    error_type: str = "request_timeout"
    video_bytes: bytes = b"not a video"
    # One entry consumed per API call (submit, status, result, cancel): an HTTP status to
    # answer, or "slow" (answer after 2 s).
    faults: list[int | str] = field(default_factory=list)
    expired: bool = False
    # Sign webhooks with a key that is not in the JWKS (a forger's).
    forge_webhooks: bool = False
    signing_key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    requests: dict[str, FalRequest] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    # --- what tests use ------------------------------------------------------------------
    def jwks_url(self) -> str:
        return f"{self.url}/.well-known/jwks.json"

    def settings(self) -> dict[str, Any]:
        return {"fal_key": FAL_KEY, "fal_queue_url": self.url, "fal_jwks_url": self.jwks_url()}

    def env(self) -> dict[str, str]:
        return {f"RENDIO_{k.upper()}": str(v) for k, v in self.settings().items()}

    def signed(
        self, body: bytes, request_id: str, *, key: Ed25519PrivateKey | None = None, at: int = 0
    ) -> dict[str, str]:
        """The four signature headers fal sends with a webhook body."""
        timestamp = str(at or int(time.time()))
        message = "\n".join(
            [request_id, USER_ID, timestamp, hashlib.sha256(body).hexdigest()]
        ).encode()
        signature = (key or self.signing_key).sign(message).hex()
        return {
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": USER_ID,
            "X-Fal-Webhook-Timestamp": timestamp,
            "X-Fal-Webhook-Signature": signature,
            "Content-Type": "application/json",
        }

    def webhook_body(self, request: FalRequest) -> bytes:
        if request.outcome == "ok":
            payload: dict[str, Any] = {
                "request_id": request.request_id,
                "gateway_request_id": request.request_id,
                "status": "OK",
                "payload": self._result(request),
            }
        else:
            payload = {
                "request_id": request.request_id,
                "gateway_request_id": request.request_id,
                "status": "ERROR",
                "error": "Invalid status code: 422",
                "payload": {"detail": [{"msg": "the prompt was refused"}]},
            }
        return json.dumps(payload).encode()

    # --- the protocol --------------------------------------------------------------------
    def _urls(self, request: FalRequest) -> dict[str, str]:
        base = f"{self.url}/{request.app}/requests/{request.request_id}"
        return {
            "request_id": request.request_id,
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    def _result(self, request: FalRequest) -> dict[str, Any]:
        return {
            "video": {
                "url": f"{self.url}/files/{request.request_id}.mp4",
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": len(self.video_bytes),
            },
            "seed": 42,
        }

    async def _fault(self) -> Response | None:
        if not self.faults:
            return None
        fault = self.faults.pop(0)
        if fault == "slow":
            await asyncio.sleep(2)
            return None
        return JSONResponse({"detail": f"injected {fault}"}, status_code=int(fault))

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {FAL_KEY}"

    async def submit(self, request: Request) -> Response:
        self.calls.append(("POST", request.url.path))
        if not self._authorized(request):
            return JSONResponse({"detail": "Unauthorized"}, status_code=401)
        if (fault := await self._fault()) is not None:
            return fault
        path = request.path_params["path"].strip("/").split("/")
        submitted = FalRequest(
            request_id=str(uuid.uuid4()),
            app="/".join(path[:2]),
            body=await request.json(),
            webhook=request.query_params.get("fal_webhook"),
            submitted=time.monotonic(),
            submitted_wall=time.time(),
            queue_seconds=self.queue_seconds,
            run_seconds=(
                random.uniform(*self.run_seconds_range)
                if self.run_seconds_range
                else self.run_seconds
            ),
            outcome=self.outcome,
            error_type=self.error_type,
        )
        self.requests[submitted.request_id] = submitted
        if submitted.webhook is not None:
            task = asyncio.create_task(self._deliver(submitted))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return JSONResponse(self._urls(submitted))

    async def status(self, request: Request) -> Response:
        self.calls.append(("GET", request.url.path))
        found = self._found(request)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if (fault := await self._fault()) is not None:
            return fault
        state = found.status(time.monotonic())
        if state == "IN_QUEUE":
            return JSONResponse({"status": state, "queue_position": 0}, status_code=202)
        if state == "IN_PROGRESS":
            return JSONResponse({"status": state, "logs": []}, status_code=202)
        body: dict[str, Any] = {"status": state, "logs": [], "metrics": {"inference_time": 1.5}}
        if found.outcome == "error":
            body |= {"error": "Request timed out", "error_type": found.error_type}
        return JSONResponse(body)

    async def result(self, request: Request) -> Response:
        self.calls.append(("GET", request.url.path))
        found = self._found(request)
        if found is None:
            return JSONResponse({"detail": "Request not found"}, status_code=404)
        if (fault := await self._fault()) is not None:
            return fault
        if found.status(time.monotonic()) != "COMPLETED":
            return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
        if found.outcome == "model_error":
            return JSONResponse(
                {"detail": [{"loc": ["body", "prompt"], "msg": "the prompt was refused"}]},
                status_code=422,
            )
        return JSONResponse(self._result(found))

    async def cancel(self, request: Request) -> Response:
        self.calls.append(("PUT", request.url.path))
        found = self._found(request)
        if found is None:
            return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
        if found.status(time.monotonic()) == "COMPLETED":
            return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
        found.cancelled = True
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    async def file(self, request: Request) -> Response:
        if self.expired:
            return Response("NoSuchKey", status_code=404)
        return Response(self.video_bytes, media_type="video/mp4")

    async def jwks(self, request: Request) -> Response:
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return JSONResponse({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}]})

    def _found(self, request: Request) -> FalRequest | None:
        return self.requests.get(request.path_params["request_id"])

    async def _deliver(self, request: FalRequest) -> None:
        """POST the signed webhook when the request completes (once; fal retries on failure,
        which the tests do not need)."""
        await asyncio.sleep(request.queue_seconds + request.run_seconds)
        body = self.webhook_body(request)
        key = Ed25519PrivateKey.generate() if self.forge_webhooks else None
        headers = self.signed(body, request.request_id, key=key)
        assert request.webhook is not None
        self.deliveries.append(await post_webhook(request.webhook, body, headers))

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/jwks.json", self.jwks),
                Route("/files/{name}", self.file),
                Route("/{owner}/{app}/requests/{request_id}/status", self.status),
                Route("/{owner}/{app}/requests/{request_id}/cancel", self.cancel, methods=["PUT"]),
                Route("/{owner}/{app}/requests/{request_id}", self.result),
                Route("/{path:path}", self.submit, methods=["POST"]),
            ]
        )


@contextmanager
def served_fal() -> Iterator[FakeFal]:
    fake = FakeFal()
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    with ServedApp(fake.app(), port):
        yield fake
