"""A local OpenAI-compatible video gateway over real HTTP, serving the `/v1/videos` shape that
LiteLLM and new-api keep since OpenAI's own Videos API shut down: multipart creation, video
objects that move through a script the test sets (one step per GET), content and thumbnail
behind the API key, deletion, injected faults, OpenAI-style `{"error": {...}}` answers, and
Standard Webhooks signing for `video.completed` / `video.failed` events.

Start it with `served_videos_gateway()`; its `url` ends in `/v1`, like a gateway's base URL.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from typing import Any

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.apple import ServedApp
from tests.helpers.processes import free_port

API_KEY = "sk-test"
# A Standard Webhooks secret (`whsec_` + base64 of the key) for tests that need one.
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLWZha2UtZ2F0ZXdheQ=="

SECONDS = ("4", "8", "12")
SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")

# One GET per step: what a video shows on its first, second, third… look.
DEFAULT_SCRIPT: tuple[dict[str, Any], ...] = (
    {"status": "queued", "progress": 0},
    {"status": "in_progress", "progress": 50},
    {"status": "completed", "progress": 100},
)

Step = str | dict[str, Any]


@dataclass
class FakeCall:
    """One request as the gateway saw it (headers with lower-case names)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


@dataclass
class FakeVideo:
    id: str
    form: dict[str, str]
    # Steps still to show, one per GET; the last one stays.
    script: list[dict[str, Any]]
    shown: dict[str, Any]
    created_at: int
    deleted: bool = False

    def advance(self) -> None:
        if self.script:
            self.shown = self.script.pop(0)

    def body(self) -> dict[str, Any]:
        """The video object, as the Videos API shapes it (the step's fields win)."""
        status = self.shown.get("status")
        done = status == "completed"
        video: dict[str, Any] = {
            "id": self.id,
            "object": "video",
            "model": self.form.get("model", "sora-2"),
            "status": "queued",
            "progress": 0,
            "created_at": self.created_at,
            "completed_at": self.created_at + 1 if done else None,
            "expires_at": self.created_at + 3600 if done else None,
            "seconds": self.form.get("seconds", "4"),
            "size": self.form.get("size", "720x1280"),
            "prompt": self.form.get("prompt"),
            "remixed_from_video_id": None,
            "error": None,
        }
        if status == "failed":
            video["error"] = {"code": "internal_error", "message": "the video failed"}
        video.update(self.shown)
        return {name: value for name, value in video.items() if value is not _MISSING}


# A step value that removes the field from the object (e.g. `{"status": MISSING}`).
_MISSING: Any = object()
MISSING = _MISSING


def _step(step: Step) -> dict[str, Any]:
    return {"status": step} if isinstance(step, str) else dict(step)


@dataclass
class FakeVideosGateway:
    """What tests arrange (scripts, faults, bytes, expiry) and inspect (requests, videos)."""

    url: str = ""
    api_key: str = API_KEY
    videos: dict[str, FakeVideo] = field(default_factory=dict)
    # The script new videos get; a step is a status word or a dict of fields to show.
    script: list[Step] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SCRIPT])
    # One entry consumed per request (any endpoint): an HTTP status to answer, or "timeout"
    # (answer only after `timeout_delay` seconds).
    faults: list[int | str] = field(default_factory=list)
    timeout_delay: float = 2.0
    requests: list[FakeCall] = field(default_factory=list)
    video_bytes: bytes = b"\x00\x00\x00\x18ftypmp42 fake video"
    thumbnail_bytes: bytes = b"RIFF\x00\x00\x00\x00WEBPVP8 fake thumbnail"
    thumbnail_type: str = "image/webp"
    # Videos whose content is gone (404), as after `expires_at`.
    expired: set[str] = field(default_factory=set)

    # --- what tests use ------------------------------------------------------------------
    def set_script(self, video_id: str, *steps: Step) -> None:
        """What a created video shows on its next GETs, one step each."""
        self.videos[video_id].script = [_step(step) for step in steps]

    def expire(self, video_id: str) -> None:
        self.expired.add(video_id)

    def calls(self, method: str | None = None) -> list[FakeCall]:
        return [call for call in self.requests if method is None or call.method == method]

    def settings(self) -> dict[str, Any]:
        return {"openai_api_key": self.api_key, "openai_base_url": self.url}

    def webhook_event(self, video_id: str, kind: str = "video.completed") -> dict[str, Any]:
        return webhook_event(video_id, kind)

    def sign_webhook(
        self, event: dict[str, Any], secret: str = WEBHOOK_SECRET, **options: Any
    ) -> tuple[bytes, dict[str, str]]:
        return sign_webhook(event, secret, **options)

    # --- the protocol --------------------------------------------------------------------
    async def _seen(self, request: Request) -> tuple[FakeCall, Response | None]:
        """Log the request, then the gateway's own checks: an injected fault, the API key."""
        call = FakeCall(
            request.method,
            request.url.path,
            dict(request.query_params),
            {name.lower(): value for name, value in request.headers.items()},
        )
        self.requests.append(call)
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                await asyncio.sleep(self.timeout_delay)
                return call, _error(504, "the upstream timed out", "server_error", "timeout")
            return call, _error(int(fault), f"injected {fault}", "server_error", None)
        if call.headers.get("authorization") != f"Bearer {self.api_key}":
            return call, _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        return call, None

    async def create(self, request: Request) -> Response:
        call, refusal = await self._seen(request)
        if refusal is not None:
            return refusal
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return _error(
                400, "Expected multipart/form-data.", "invalid_request_error", "invalid_body"
            )
        call.form, call.files = _multipart(content_type, await request.body())
        form = call.form
        invalid = _invalid(form)
        if invalid is not None:
            return _error(400, invalid, "invalid_request_error", "invalid_value")
        video = FakeVideo(
            id=f"video_{uuid.uuid4().hex}",
            form=form,
            script=[_step(step) for step in self.script],
            shown={"status": "queued", "progress": 0},
            created_at=int(time.time()),
        )
        self.videos[video.id] = video
        return JSONResponse(video.body())

    async def retrieve(self, request: Request) -> Response:
        _, refusal = await self._seen(request)
        if refusal is not None:
            return refusal
        video = self._found(request)
        if video is None:
            return _not_found(request)
        video.advance()
        return JSONResponse(video.body())

    async def content(self, request: Request) -> Response:
        _, refusal = await self._seen(request)
        if refusal is not None:
            return refusal
        video = self._found(request)
        if video is None or video.id in self.expired:
            return _not_found(request)
        if video.shown.get("status") != "completed":
            return _error(400, "Video is not ready yet.", "invalid_request_error", None)
        variant = request.query_params.get("variant", "video")
        if variant == "video":
            return Response(self.video_bytes, media_type="video/mp4")
        if variant == "thumbnail":
            return Response(self.thumbnail_bytes, media_type=self.thumbnail_type)
        return _error(400, f"Unknown variant {variant!r}.", "invalid_request_error", None)

    async def delete(self, request: Request) -> Response:
        _, refusal = await self._seen(request)
        if refusal is not None:
            return refusal
        video = self._found(request)
        if video is None:
            return _not_found(request)
        video.deleted = True
        return JSONResponse({"id": video.id, "object": "video.deleted", "deleted": True})

    def _found(self, request: Request) -> FakeVideo | None:
        video = self.videos.get(request.path_params["video_id"])
        return None if video is None or video.deleted else video

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/videos", self.create, methods=["POST"]),
                Route("/v1/videos/{video_id}", self.retrieve, methods=["GET"]),
                Route("/v1/videos/{video_id}", self.delete, methods=["DELETE"]),
                Route("/v1/videos/{video_id}/content", self.content, methods=["GET"]),
            ]
        )


@contextmanager
def served_videos_gateway(api_key: str = API_KEY) -> Iterator[FakeVideosGateway]:
    """A fake gateway on a free port; its `url` is the base URL a client is given (`…/v1`)."""
    fake = FakeVideosGateway(api_key=api_key)
    port = free_port()
    with ServedApp(fake.app(), port) as served:
        fake.url = f"{served.url}/v1"
        yield fake


def webhook_event(video_id: str, kind: str = "video.completed") -> dict[str, Any]:
    """An event as the gateway would deliver it (`video.completed` or `video.failed`)."""
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "created_at": int(time.time()),
        "type": kind,
        "data": {"id": video_id},
    }


def sign_webhook(
    event: dict[str, Any],
    secret: str = WEBHOOK_SECRET,
    *,
    msg_id: str | None = None,
    at: datetime | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a Standard Webhooks delivery of `event` (`at`: when it was
    signed, for tolerance tests; `msg_id`: the same on a redelivery)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    signed_at = (at or datetime.now(UTC)).astimezone(UTC)
    message_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(message_id, signed_at, body.decode())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return body, headers


def _multipart(
    content_type: str, body: bytes
) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    """A multipart body's text fields and files (the standard library's MIME parser: the
    gateway needs no form-parsing dependency)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    form: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files[str(name)] = (filename, payload)
        else:
            form[str(name)] = payload.decode()
    return form, files


def _invalid(form: dict[str, str]) -> str | None:
    if not form.get("prompt"):
        return "Missing required parameter: 'prompt'."
    if form.get("seconds", "4") not in SECONDS:
        return f"Invalid value for 'seconds': {form['seconds']!r}."
    if form.get("size", "720x1280") not in SIZES:
        return f"Invalid value for 'size': {form['size']!r}."
    return None


def _error(status: int, message: str, kind: str, code: str | None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
    )


def _not_found(request: Request) -> JSONResponse:
    video_id = request.path_params["video_id"]
    return _error(
        404, f"Video with id '{video_id}' not found.", "invalid_request_error", "not_found"
    )
