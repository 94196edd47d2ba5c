"""`POST /webhooks/fal`, `/webhooks/replicate`, `/webhooks/openai`: a provider saying a job
changed.

Each delivery is verified before anything else (a forged, stale or unsigned one is refused with
401 and changes nothing), recorded once by the provider's delivery id (a redelivery is answered
200 `duplicate` and does nothing), and turned into a "look now" for its job: the worker then
polls the provider through the same step as every scheduled poll, so a webhook can never end
a job differently from polling, and polling still finishes a job whose webhook was lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation import jobs
from rendio.generation.service import look_now
from rendio.platform.db import Session, after_commit
from rendio.platform.deliveries import mark_processed, record_delivery
from rendio.platform.errors import ErrorCode, Unauthorized
from rendio.platform.metrics import WEBHOOKS
from rendio.platform.openapi import errors
from rendio.webhooks.services import WebhookDeps
from rendio.webhooks.signatures import Forged, StandardWebhooks, parse_json, verify_fal

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
# A delivery that does not verify (forged, stale, unsigned, provider not configured) is 401.
_ERRORS = errors(ErrorCode.UNAUTHORIZED, ErrorCode.DATABASE_ERROR)


class WebhookOut(BaseModel):
    """`queued` (the job will be looked at now), `unknown_job` (not ours, or already ended),
    or `duplicate` (this delivery came before)."""

    outcome: str


def _refused(source: str, forged: Forged) -> Unauthorized:
    WEBHOOKS.labels(source, "rejected").inc()
    return Unauthorized({"reason": f"webhook refused: {forged}"})


async def _receive(
    session: AsyncSession,
    source: str,
    delivery_id: str,
    kind: str,
    payload: dict[str, Any],
    provider_job_id: Any,
) -> WebhookOut:
    recorded = await record_delivery(session, source, delivery_id, kind, payload)
    if recorded is None:
        outcome = "duplicate"
    else:
        job_id = None
        if isinstance(provider_job_id, str) and provider_job_id:
            job_id = await jobs.unfinished_by_provider_id(session, source, provider_job_id)
        if job_id is not None:
            await look_now(session, job_id)
        outcome = "queued" if job_id is not None else "unknown_job"
        await mark_processed(session, recorded)
    after_commit(session, lambda: WEBHOOKS.labels(source, outcome).inc())
    return WebhookOut(outcome=outcome)


@router.post("/fal", response_model=WebhookOut, responses=_ERRORS)
async def fal_webhook(request: Request, services: WebhookDeps, session: Session) -> WebhookOut:
    """fal's completion callback (Ed25519-signed, keys from fal's JWKS)."""
    body = await request.body()
    try:
        request_id = await verify_fal(services.verifiers.fal, request.headers, body)
        payload = parse_json(body)
    except Forged as forged:
        raise _refused("fal", forged) from None
    kind = str(payload.get("status", ""))
    return await _receive(
        session, "fal", request_id, kind, payload, payload.get("request_id", request_id)
    )


async def _standard(
    source: str, verifier: StandardWebhooks | None, headers: Mapping[str, str], body: bytes
) -> tuple[str, dict[str, Any]]:
    if verifier is None:
        raise _refused(source, Forged("this provider is not configured"))
    try:
        return await verifier.verify(headers, body)
    except Forged as forged:
        raise _refused(source, forged) from None


@router.post("/replicate", response_model=WebhookOut, responses=_ERRORS)
async def replicate_webhook(
    request: Request, services: WebhookDeps, session: Session
) -> WebhookOut:
    """Replicate's prediction callback (Standard Webhooks); the body is the prediction."""
    delivery_id, prediction = await _standard(
        "replicate", services.verifiers.replicate, request.headers, await request.body()
    )
    kind = str(prediction.get("status", ""))
    return await _receive(session, "replicate", delivery_id, kind, prediction, prediction.get("id"))


@router.post("/openai", response_model=WebhookOut, responses=_ERRORS)
async def openai_webhook(request: Request, services: WebhookDeps, session: Session) -> WebhookOut:
    """An OpenAI-compatible gateway's `video.completed` / `video.failed` event."""
    delivery_id, event = await _standard(
        "openai", services.verifiers.openai, request.headers, await request.body()
    )
    data = event.get("data")
    video_id = data.get("id") if isinstance(data, dict) else None
    return await _receive(
        session, "openai", delivery_id, str(event.get("type", "")), event, video_id
    )
