"""A local Runway task API over real HTTP: `POST /v1/text_to_video` and `/v1/image_to_video`,
`GET` and `DELETE /v1/tasks/{id}`, with Runway's documented answer shapes, its key and version
header checks, injected faults, and result files that can expire.

A task moves one step through its script on each GET and then stays on the last step. A step
is a status (`"THROTTLED"`) or a dict of fields (`{"status": "RUNNING", "progress": 0.5}`);
the fake fills in what Runway would add (`output`, `cost`, `estimatedCost`, `createdAt`), and a
field given as None is left out of the answer (`{"status": "SUCCEEDED", "output": None}`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.apple import ServedApp
from tests.helpers.processes import free_port

RUNWAY_KEY = "key_test"
RUNWAY_VERSION = "2024-11-06"

Step = str | dict[str, Any]

DEFAULT_SCRIPT: tuple[Step, ...] = (
    {"status": "PENDING"},
    {"status": "RUNNING", "progress": 0.5},
    {"status": "SUCCEEDED"},
)
_TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}
_CANCELLABLE = {"PENDING", "THROTTLED", "RUNNING"}


@dataclass
class RunwayCall:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class RunwayTask:
    id: str
    endpoint: str  # "text_to_video" or "image_to_video"
    body: dict[str, Any]
    script: list[Step]
    created_at: str
    # Index of the step the last GET answered (-1: never looked at).
    step: int = -1
    cancelled: bool = False
    deleted: bool = False

    def current(self) -> dict[str, Any]:
        if self.cancelled:
            return {"status": "CANCELLED"}
        step = self.script[max(0, min(self.step, len(self.script) - 1))]
        return {"status": step} if isinstance(step, str) else dict(step)


@dataclass
class FakeRunway:
    """What tests arrange (scripts, faults, result bytes, expiry) and inspect (tasks,
    requests)."""

    url: str = ""
    api_key: str = RUNWAY_KEY
    api_version: str = RUNWAY_VERSION
    # The script of tasks created from now on; `tasks[id].script` changes one task's.
    script: list[Step] = field(default_factory=lambda: list(DEFAULT_SCRIPT))
    # One consumed per API request (not file downloads): an HTTP status to answer, or
    # "timeout" (answer normally, but only after `timeout_seconds`).
    faults: list[int | str] = field(default_factory=list)
    timeout_seconds: float = 2.0
    video_bytes: bytes = b"\x00\x00\x00\x18ftypmp42 fake runway video"
    credits_per_second: int = 5
    # Task ids whose output file answers 404 (the signed URL expired).
    expired: set[str] = field(default_factory=set)
    tasks: dict[str, RunwayTask] = field(default_factory=dict)
    requests: list[RunwayCall] = field(default_factory=list)

    # --- what tests use ------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {"runway_api_key": self.api_key, "runway_api_url": self.url}

    def env(self) -> dict[str, str]:
        return {f"RENDIO_{k.upper()}": str(v) for k, v in self.settings().items()}

    def file_url(self, task_id: str) -> str:
        return f"{self.url}/files/{task_id}.mp4"

    def expire(self, task_id: str) -> None:
        self.expired.add(task_id)

    def calls(self, method: str | None = None) -> list[RunwayCall]:
        return [call for call in self.requests if method is None or call.method == method]

    def reset(self) -> None:
        self.script = list(DEFAULT_SCRIPT)
        self.faults.clear()
        self.timeout_seconds = 2.0
        self.video_bytes = b"\x00\x00\x00\x18ftypmp42 fake runway video"
        self.expired.clear()
        self.tasks.clear()
        self.requests.clear()

    # --- the API -------------------------------------------------------------------------
    async def _refusal(self, request: Request) -> Response | None:
        """Log the request, then Runway's checks in its order: key, version; then a fault."""
        body: dict[str, Any] | None = None
        raw = await request.body()
        if raw:
            try:
                parsed = await request.json()
            except ValueError:
                parsed = None
            body = parsed if isinstance(parsed, dict) else None
        self.requests.append(
            RunwayCall(request.method, request.url.path, dict(request.headers), body)
        )
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Invalid API key")
        version = request.headers.get("x-runway-version")
        if version is None:
            return _error(400, "The X-Runway-Version header is required")
        if version != self.api_version:
            return _error(400, f"Unsupported API version: {version}")
        if self.faults:
            fault = self.faults.pop(0)
            if fault == "timeout":
                await asyncio.sleep(self.timeout_seconds)
            else:
                return _error(int(fault), f"injected {fault}")
        return None

    async def text_to_video(self, request: Request) -> Response:
        return await self._create(request, "text_to_video", required=("promptText",))

    async def image_to_video(self, request: Request) -> Response:
        return await self._create(request, "image_to_video", required=("promptImage",))

    async def _create(self, request: Request, endpoint: str, required: tuple[str, ...]) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        body = self.requests[-1].body
        if body is None:
            return _error(400, "The body must be a JSON object")
        problem = _invalid(body, required)
        if problem is not None:
            return _error(400, problem)
        task = RunwayTask(
            id=str(uuid.uuid4()),
            endpoint=endpoint,
            body=body,
            script=list(self.script),
            created_at=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        )
        self.tasks[task.id] = task
        return JSONResponse({"id": task.id, "estimatedCost": {"credits": self._credits(task)}})

    async def get_task(self, request: Request) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        task = self._found(request)
        if task is None:
            return _error(404, "Task not found")
        task.step = min(task.step + 1, len(task.script) - 1)
        return JSONResponse(self._shape(task))

    async def delete_task(self, request: Request) -> Response:
        if (refusal := await self._refusal(request)) is not None:
            return refusal
        task = self._found(request)
        if task is None:
            return _error(404, "Task not found")
        # A task still waiting or running is cancelled; any other is deleted.
        if not task.cancelled and task.current()["status"] in _CANCELLABLE:
            task.cancelled = True
        else:
            task.deleted = True
        return Response(status_code=204)

    async def file(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        if task_id not in self.tasks or task_id in self.expired:
            return Response(
                "<Error><Code>AccessDenied</Code></Error>", status_code=404, media_type="text/xml"
            )
        return Response(self.video_bytes, media_type="video/mp4")

    def _found(self, request: Request) -> RunwayTask | None:
        task = self.tasks.get(request.path_params["task_id"])
        return None if task is None or task.deleted else task

    def _credits(self, task: RunwayTask) -> int:
        duration = task.body.get("duration")
        seconds = duration if isinstance(duration, int) else 5
        return seconds * self.credits_per_second

    def _shape(self, task: RunwayTask) -> dict[str, Any]:
        """The task as Runway answers it: its fields for the status, then the step's own."""
        step = task.current()
        status = step.get("status")
        shape: dict[str, Any] = {"id": task.id, "status": status, "createdAt": task.created_at}
        credits = {"credits": self._credits(task)}
        if status in _TERMINAL:
            shape["cost"] = credits
        else:
            shape["estimatedCost"] = credits
        if status == "RUNNING":
            shape["progress"] = 0.0
        elif status == "SUCCEEDED":
            shape["output"] = [self.file_url(task.id)]
        elif status == "FAILED":
            shape["failure"] = "The generation failed."
            shape["failureCode"] = "INTERNAL.BAD_OUTPUT.CODE01"
        shape.update(step)
        return {key: value for key, value in shape.items() if value is not None}

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/text_to_video", self.text_to_video, methods=["POST"]),
                Route("/v1/image_to_video", self.image_to_video, methods=["POST"]),
                Route("/v1/tasks/{task_id}", self.get_task, methods=["GET"]),
                Route("/v1/tasks/{task_id}", self.delete_task, methods=["DELETE"]),
                Route("/files/{task_id}.mp4", self.file, methods=["GET"]),
            ]
        )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _invalid(body: dict[str, Any], required: tuple[str, ...]) -> str | None:
    """What Runway's validation would refuse in a create body (None: nothing)."""
    for name in ("model", "ratio", *required):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"{name}: Required"
    duration = body.get("duration")
    if duration is not None and (not isinstance(duration, int) or not 2 <= duration <= 10):
        return "duration: Number must be between 2 and 10"
    prompt = body.get("promptText")
    if prompt is not None and len(str(prompt).encode("utf-16-le")) > 2000:
        return "promptText: String must contain at most 1000 character(s)"
    image = body.get("promptImage")
    if image is not None and not str(image).startswith(("https://", "data:image/")):
        return "promptImage: Invalid url"
    return None


@contextmanager
def served_runway() -> Iterator[FakeRunway]:
    """A FakeRunway on a free local port; its `url` is the API's base URL."""
    fake = FakeRunway()
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    with ServedApp(fake.app(), port):
        yield fake
