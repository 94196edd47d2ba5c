"""get-video-jobs (history pages), delete-video-job and restore-video-job."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request

from rendio.generation.links import MediaLinks
from rendio.generation.services import GenerationDeps
from rendio.history import service
from rendio.history.schemas import HistoryPage, HistoryQuery, JobRef, JobVisibility
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.platform.db import Session
from rendio.platform.errors import ErrorCode, ValidationFailed
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["history"])
_PAGE_ERRORS = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED)
_JOB_ERRORS = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED, ErrorCode.NOT_FOUND)


@router.get("/get-video-jobs", response_model=HistoryPage, responses=_PAGE_ERRORS)
async def get_video_jobs(
    request: Request,
    services: GenerationDeps,
    caller: CurrentUser,
    session: Session,
    query: Annotated[HistoryQuery, Query()],
) -> HistoryPage:
    """The caller's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    return await _page(request, services, caller, session, query)


@router.post("/get-video-jobs", response_model=HistoryPage, responses=_PAGE_ERRORS)
async def post_video_jobs(
    request: Request,
    services: GenerationDeps,
    caller: CurrentUser,
    session: Session,
    body: HistoryQuery | None = Body(default=None),
) -> HistoryPage:
    return await _page(request, services, caller, session, body or HistoryQuery())


async def _page(
    request: Request,
    services: GenerationDeps,
    caller: CurrentUser,
    session: Session,
    query: HistoryQuery,
) -> HistoryPage:
    return await service.page(
        session,
        caller.user_id,
        query,
        secret=services.secret,
        links=MediaLinks(request, services),
        accept_language=request.headers.get("accept-language"),
    )


@router.post("/delete-video-job", response_model=JobVisibility, responses=_JOB_ERRORS)
async def delete_video_job(caller: CurrentUser, session: Session, body: JobRef) -> JobVisibility:
    """Hide a job from the history (restorable); deleting twice is harmless."""
    await service.set_deleted(session, caller.user_id, body.job_id, deleted=True)
    return JobVisibility(job_id=body.job_id, deleted=True)


@router.delete("/delete-video-job", response_model=JobVisibility, responses=_JOB_ERRORS)
async def delete_video_job_by_method(
    caller: CurrentUser,
    session: Session,
    job_id: uuid.UUID | None = Query(default=None),
    body: JobRef | None = Body(default=None),
) -> JobVisibility:
    """The same, as `DELETE` with `?job_id=` or a JSON body (the app's client sends DELETE)."""
    chosen = job_id or (body.job_id if body else None)
    if chosen is None:
        raise ValidationFailed({"fields": [{"field": "job_id", "problem": "Field required"}]})
    await service.set_deleted(session, caller.user_id, chosen, deleted=True)
    return JobVisibility(job_id=chosen, deleted=True)


@router.post("/restore-video-job", response_model=JobVisibility, responses=_JOB_ERRORS)
async def restore_video_job(caller: CurrentUser, session: Session, body: JobRef) -> JobVisibility:
    """Bring a soft-deleted job back; restoring a job that is not deleted is harmless."""
    await service.set_deleted(session, caller.user_id, body.job_id, deleted=False)
    return JobVisibility(job_id=body.job_id, deleted=False)
