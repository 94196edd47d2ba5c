"""Starting a paid job: check, charge, create and queue — in the caller's one transaction.

How a job ends (exactly once, refunded when it fails) is `jobs.py`'s business.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.service import offer
from rendio.generation import jobs
from rendio.generation.jobs import ADVANCE_TASK, JobStatus, job_lock
from rendio.generation.schemas import MAX_PROMPT, GenerateIn, GenerateOut, clean_prompt
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform.errors import InvalidPrompt, ModelUnavailable, ValidationFailed
from rendio.platform.queue import defer_in_transaction
from rendio.platform.reads import Reads

_CHOICES = {
    "duration": ("durations", "default_duration"),
    "aspect_ratio": ("aspect_ratios", "default_aspect_ratio"),
    "resolution": ("resolutions", "default_resolution"),
}


def _resolve_settings(allowed: dict[str, Any], asked: dict[str, Any]) -> dict[str, Any]:
    """The request's settings with the model's defaults filled in, or ERR_4013 naming those
    the model does not offer."""
    resolved: dict[str, Any] = {}
    problems = []
    for name, (options, default) in _CHOICES.items():
        value = asked.get(name)
        if value is None:
            value = allowed[default]
        if value not in allowed[options]:
            problems.append({"field": f"settings.{name}", "problem": f"one of {allowed[options]}"})
        resolved[name] = value
    if problems:
        raise ValidationFailed({"fields": problems})
    return resolved


def _image_for(allowed: dict[str, Any], image_url: str | None) -> str | None:
    """The request's image if the model takes one (ERR_4013 if it does not, or needs one)."""
    accepts = allowed.get("image_input", "none")
    problem = None
    if image_url is not None and accepts == "none":
        problem = "this model does not take an image"
    elif image_url is None and accepts == "required":
        problem = "this model needs an image"
    if problem is not None:
        raise ValidationFailed({"fields": [{"field": "image_url", "problem": problem}]})
    return image_url


async def start_generation(
    session: AsyncSession,
    reads: Reads,
    user_id: uuid.UUID,
    body: GenerateIn,
    offered: frozenset[str],
    wait_seconds: float,
) -> GenerateOut:
    """Check, charge, create and queue a job — all in the caller's transaction."""
    prompt = clean_prompt(body.prompt)
    if prompt is None:
        raise InvalidPrompt({"max_length": MAX_PROMPT})
    model = await offer(reads, body.model_id, offered)
    if model is None:
        raise ModelUnavailable({"model_id": str(body.model_id)})
    settings = _resolve_settings(model.settings, body.settings.model_dump())
    image_url = _image_for(model.settings, str(body.image_url) if body.image_url else None)
    cost = model.price(settings)

    job_id = await jobs.insert(
        session,
        user_id=user_id,
        model_id=body.model_id,
        prompt=prompt,
        settings=settings,
        image_url=image_url,
        provider=model.provider,
        cost=cost,
        deadline_seconds=model.deadline_seconds,
        wait_seconds=wait_seconds,
    )
    remaining = await ledger.deduct(
        session,
        user_id,
        cost,
        reason=Reason.GENERATION,
        transaction_id=f"generation:{job_id}",
        job_id=job_id,
    )
    await defer_in_transaction(
        session, ADVANCE_TASK, {"job_id": str(job_id)}, lock=job_lock(job_id)
    )
    return GenerateOut(
        job_id=job_id,
        status=JobStatus.PENDING,
        credits_used=cost,
        credits_remaining=remaining,
    )


# A look-now task outranks the job's scheduled next look (procrastinate runs a lock's tasks by
# priority, then age), so a webhook is acted on at once instead of after the current wait.
LOOK_NOW_PRIORITY = 1


async def look_now(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Have a worker look at the job now (a provider said it changed), through the same step
    as a scheduled poll, so a webhook can never end a job differently from polling. At most
    one such look waits per job; False if one already does."""
    return await defer_in_transaction(
        session,
        ADVANCE_TASK,
        {"job_id": str(job_id), "look_now": True},
        lock=job_lock(job_id),
        priority=LOOK_NOW_PRIORITY,
        queueing_lock=f"look-now:{job_id}",
    )
