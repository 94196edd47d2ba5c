"""generate-video (charged, idempotent) and get-video-status."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rendio.generation import jobs
from rendio.generation.links import MediaLinks
from rendio.generation.schemas import (
    GenerateIn,
    GenerateOut,
    VideoStatusIn,
    VideoStatusOut,
    job_error,
)
from rendio.generation.service import OPERATION, start_generation
from rendio.generation.services import GenerationDeps, GenerationServices
from rendio.identity.dependencies import (
    AUTH_ERRORS,
    CALLER_SECURITY,
    Caller,
    CurrentUser,
    IdentifiedCaller,
    check_apikey,
    identify,
)
from rendio.platform import idempotency
from rendio.platform.errors import ErrorCode, Forbidden, NotFound, ValidationFailed
from rendio.platform.openapi import errors
from rendio.platform.services import services_of

router = APIRouter(prefix="/functions/v1", tags=["generation"])
# Included without the router-level apikey gate: its endpoints call the gate themselves.
polled = APIRouter(prefix="/functions/v1", tags=["generation"])
_STATUS_ERRORS = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)
# What FastAPI would have documented for `job_id: str = Query()` and the two gates.
_STATUS_OPERATION: dict[str, Any] = {
    "security": CALLER_SECURITY,
    "parameters": [
        {
            "name": "job_id",
            "in": "query",
            "required": True,
            "schema": {"type": "string", "title": "Job Id"},
        }
    ],
}
# ...and the error it would have raised without one (rendered by the same handler).
_MISSING_JOB_ID = {"type": "missing", "loc": ("query", "job_id"), "msg": "Field required"}


@router.post(
    "/generate-video",
    response_model=GenerateOut,
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.RATE_LIMITED,
        ErrorCode.IDEMPOTENCY_KEY_INVALID,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ErrorCode.IDEMPOTENCY_IN_PROGRESS,
        ErrorCode.VALIDATION_FAILED,
        ErrorCode.INVALID_PROMPT,
        ErrorCode.MODEL_UNAVAILABLE,
        ErrorCode.INSUFFICIENT_CREDITS,
        ErrorCode.NOT_FOUND,
    ),
    openapi_extra=idempotency.REQUIRED_HEADER,
)
async def generate_video(
    request: Request,
    services: GenerationDeps,
    caller: IdentifiedCaller,
    body: GenerateIn,
    idempotency_key: str | None = Header(
        default=None, alias=idempotency.HEADER, include_in_schema=False
    ),
) -> JSONResponse:
    """Charge for a video and queue it. Send an `Idempotency-Key`; a retry with the same key
    and body answers the first result (`X-Idempotent-Replay: true`) without a second charge."""
    limiter, user_key = services.limiter, str(caller.user_id)
    await limiter.enforce(request, OPERATION, user_key, consume=False)
    key = idempotency.parse_key(idempotency_key)
    if body.user_id is not None and body.user_id != caller.user_id:
        raise Forbidden({"reason": "user_id is not the caller"})
    fingerprint = idempotency.fingerprint(
        "POST", request.url.path, body.model_dump(mode="json", exclude={"user_id"})
    )
    started = await start_generation(
        services.reads,
        caller.user_id,
        body,
        key=key,
        fingerprint=fingerprint,
        offered=services.offered_providers,
        wait_seconds=services.settings.provider_queue_timeout,
    )
    answer = started.answer
    if started.replayed:
        return JSONResponse(
            answer.body, status_code=answer.status_code, headers={idempotency.REPLAY_HEADER: "true"}
        )
    await limiter.count(request, OPERATION, user_key)
    return JSONResponse(answer.body, status_code=answer.status_code)


@polled.get(
    "/get-video-status",
    response_model=VideoStatusOut,
    responses=_STATUS_ERRORS,
    openapi_extra=_STATUS_OPERATION,
)
async def get_video_status(request: Request) -> Response:
    # Apps poll it every few seconds per video in flight: it asks FastAPI for nothing but the
    # request (the apikey gate and the caller check are called here, no database session is
    # opened), measured in bench/README.md.
    check_apikey(request)
    caller = await identify(request)
    job_id = request.query_params.get("job_id")
    if job_id is None:
        raise RequestValidationError([_MISSING_JOB_ID])
    services = services_of(request.app.state, GenerationServices)
    answer = await _status(request, services, caller, job_id)
    return Response(answer.model_dump_json(), media_type="application/json")


@router.post("/get-video-status", response_model=VideoStatusOut, responses=_STATUS_ERRORS)
async def post_video_status(
    request: Request,
    services: GenerationDeps,
    caller: CurrentUser,
    body: VideoStatusIn,
) -> VideoStatusOut:
    return await _status(request, services, caller, str(body.job_id))


async def _status(
    request: Request,
    services: GenerationServices,
    caller: Caller,
    raw_job_id: str,
) -> VideoStatusOut:
    """A job of the caller's (another user's job is 404, as if it did not exist)."""
    try:
        job_id = uuid.UUID(raw_job_id)
    except ValueError:
        raise ValidationFailed(
            {"fields": [{"field": "job_id", "problem": "must be a UUID"}]}
        ) from None
    row = await jobs.status_of(services.reads, job_id, caller.user_id)
    if row is None:
        raise NotFound({"job_id": str(job_id)})
    link = MediaLinks(request, services)
    error = job_error(row["error_code"], request.headers.get("accept-language"))
    return VideoStatusOut(
        job_id=row["job_id"],
        status=row["status"],
        progress=row["progress"],
        video_url=link(row["video_url"]),
        thumbnail_url=link(row["thumbnail_url"]),
        credits_used=row["credits_used"],
        error=error,
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        media_expired=row["media_expired_at"] is not None,
    )
