"""generate-video (charged, idempotent) and get-video-status."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Header, Query, Request
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
from rendio.generation.service import start_generation
from rendio.generation.services import GenerationDeps, GenerationServices
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.platform import idempotency
from rendio.platform.db import Session
from rendio.platform.errors import ErrorCode, Forbidden, NotFound, ValidationFailed
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["generation"])
OPERATION = "generate-video"
_STATUS_ERRORS = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)


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
    caller: CurrentUser,
    session: Session,
    body: GenerateIn,
    idempotency_key: str | None = Header(
        default=None, alias=idempotency.HEADER, include_in_schema=False
    ),
) -> JSONResponse:
    """Charge for a video and queue it. Send an `Idempotency-Key`; a retry with the same key
    and body answers the first result (`X-Idempotent-Replay: true`) without a second charge."""
    limiter, user_key = services.limiter, str(caller.user.id)
    await limiter.enforce(request, OPERATION, user_key, consume=False)
    key = idempotency.parse_key(idempotency_key)
    if body.user_id is not None and body.user_id != caller.user.id:
        raise Forbidden({"reason": "user_id is not the caller"})
    fingerprint = idempotency.fingerprint(
        "POST", request.url.path, body.model_dump(mode="json", exclude={"user_id"})
    )
    stored = await idempotency.claim(session, caller.user.id, key, fingerprint)
    if stored is not None:
        return JSONResponse(
            stored.body, status_code=stored.status_code, headers={idempotency.REPLAY_HEADER: "true"}
        )
    started = await start_generation(
        session,
        caller.user.id,
        body,
        services.offered_providers,
        services.settings.provider_queue_timeout,
    )
    answer = idempotency.StoredAnswer(200, started.model_dump(mode="json"))
    await idempotency.remember(
        session,
        caller.user.id,
        key,
        operation=OPERATION,
        request_fingerprint=fingerprint,
        answer=answer,
        job_id=started.job_id,
    )
    await limiter.count(request, OPERATION, user_key)
    return JSONResponse(answer.body, status_code=answer.status_code)


@router.get("/get-video-status", response_model=VideoStatusOut, responses=_STATUS_ERRORS)
async def get_video_status(
    request: Request,
    services: GenerationDeps,
    caller: CurrentUser,
    job_id: str = Query(),
) -> VideoStatusOut:
    return await _status(request, services, caller, job_id)


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
    caller: CurrentUser,
    raw_job_id: str,
) -> VideoStatusOut:
    """A job of the caller's (another user's job is 404, as if it did not exist)."""
    try:
        job_id = uuid.UUID(raw_job_id)
    except ValueError:
        raise ValidationFailed(
            {"fields": [{"field": "job_id", "problem": "must be a UUID"}]}
        ) from None
    row = await jobs.status_of(services.reads, job_id, caller.user.id)
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
