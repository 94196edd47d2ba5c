"""Generation rules: start a paid job in one transaction, and end it exactly once.

Every end of a job is a compare-and-swap on its status (`pending`/`processing` → `completed` or
`failed`): whichever of the worker, a second worker or the sweeper gets there first decides,
and only a swap to `failed` refunds — with the ledger transaction id `refund:<job id>` as the
second lock. So a job is charged once and refunded at most once, whatever runs twice.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.credits import service as credits
from rendio.credits.service import Reason
from rendio.generation.schemas import GenerateIn, GenerateOut, clean_prompt
from rendio.platform.errors import ErrorCode, InvalidPrompt, ModelUnavailable, ValidationFailed
from rendio.platform.queue import defer_in_transaction

ADVANCE_TASK = "generation:advance_job"
UNFINISHED = ("pending", "processing")
_MODEL = text(
    "SELECT provider, cost_per_generation, settings, deadline_seconds, is_available "
    "FROM models WHERE id = :id"
)
_NEW_JOB = text(
    "INSERT INTO video_jobs (job_id, user_id, model_id, prompt, settings, image_url, provider, "
    "credits_used, deadline_at) VALUES (:job_id, :user_id, :model_id, :prompt, "
    "CAST(:settings AS jsonb), :image_url, :provider, :cost, "
    "now() + make_interval(secs => :deadline))"
)


def job_lock(job_id: uuid.UUID | str) -> str:
    """The procrastinate lock that keeps one job's tasks from ever running side by side."""
    return f"video-job:{job_id}"


def _resolve_settings(allowed: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    """The request's settings with the model's defaults filled in, or ERR_4013 naming those
    the model does not offer."""
    choices = {
        "duration": ("durations", "default_duration"),
        "aspect_ratio": ("aspect_ratios", "default_aspect_ratio"),
        "resolution": ("resolutions", "default_resolution"),
    }
    resolved: dict[str, Any] = {}
    problems = []
    for name, (options, default) in choices.items():
        value = asked.get(name)
        if value is None:
            value = allowed[default]
        if value not in allowed[options]:
            problems.append({"field": f"settings.{name}", "problem": f"one of {allowed[options]}"})
        resolved[name] = value
    if problems:
        raise ValidationFailed({"fields": problems})
    return resolved


async def start_generation(
    session: AsyncSession, user_id: uuid.UUID, body: GenerateIn, offered: set[str]
) -> GenerateOut:
    """Check, charge, create and queue a job — all in the caller's transaction."""
    prompt = clean_prompt(body.prompt)
    if prompt is None:
        raise InvalidPrompt({"max_length": 2000})
    model = (await session.execute(_MODEL, {"id": body.model_id})).one_or_none()
    if model is None or not model.is_available or model.provider not in offered:
        raise ModelUnavailable({"model_id": str(body.model_id)})
    settings = _resolve_settings(model.settings, body.settings.model_dump())

    job_id = uuid.uuid4()
    await session.execute(
        _NEW_JOB,
        {
            "job_id": job_id,
            "user_id": user_id,
            "model_id": body.model_id,
            "prompt": prompt,
            "settings": json.dumps(settings),
            "image_url": str(body.image_url) if body.image_url else None,
            "provider": model.provider,
            "cost": model.cost_per_generation,
            "deadline": model.deadline_seconds,
        },
    )
    remaining = await credits.deduct(
        session,
        user_id,
        model.cost_per_generation,
        reason=Reason.GENERATION,
        transaction_id=f"generation:{job_id}",
        job_id=job_id,
    )
    await defer_in_transaction(
        session, ADVANCE_TASK, {"job_id": str(job_id)}, lock=job_lock(job_id)
    )
    return GenerateOut(
        job_id=job_id,
        status="pending",
        credits_used=model.cost_per_generation,
        credits_remaining=remaining,
    )


async def fail_job(session: AsyncSession, job_id: uuid.UUID, code: ErrorCode, message: str) -> bool:
    """End an unfinished job as failed and refund it; False if it had already ended."""
    ended = (
        await session.execute(
            text(
                "UPDATE video_jobs SET status = 'failed', error_code = :code, "
                "error_message = :message, completed_at = now(), updated_at = now() "
                "WHERE job_id = :job_id AND status IN ('pending', 'processing') "
                "RETURNING user_id, credits_used"
            ),
            {"job_id": job_id, "code": code.value, "message": message[:1000]},
        )
    ).one_or_none()
    if ended is None:
        return False
    if ended.credits_used > 0:
        await credits.add(
            session,
            ended.user_id,
            ended.credits_used,
            reason=Reason.REFUND,
            transaction_id=f"refund:{job_id}",
            job_id=job_id,
            details={"error_code": code.value},
        )
    return True


async def complete_job(
    session: AsyncSession, job_id: uuid.UUID, video_key: str, thumbnail_key: str
) -> bool:
    """Mark a processing job completed with its stored files; False if it had already ended."""
    done = (
        await session.execute(
            text(
                "UPDATE video_jobs SET status = 'completed', progress = 100, video_url = :video, "
                "thumbnail_url = :thumbnail, completed_at = now(), updated_at = now() "
                "WHERE job_id = :job_id AND status = 'processing' RETURNING job_id"
            ),
            {"job_id": job_id, "video": video_key, "thumbnail": thumbnail_key},
        )
    ).one_or_none()
    return done is not None
