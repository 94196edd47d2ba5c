"""Starting a paid job: check, charge, create and queue — in one statement, its own transaction.

How a job ends (exactly once, refunded when it fails) is `jobs.py`'s business.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.service import offer
from rendio.generation import jobs
from rendio.generation.jobs import ADVANCE_TASK, JobStatus, job_lock
from rendio.generation.schemas import MAX_PROMPT, GenerateIn, GenerateOut, clean_prompt
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform import idempotency
from rendio.platform.errors import AppError, InvalidPrompt, ModelUnavailable, ValidationFailed
from rendio.platform.queue import defer_after, defer_in_transaction, defer_parameters
from rendio.platform.reads import Reads, Statement

OPERATION = "generate-video"
# The answer stored with the key: what the client is told, its balance filled in by the debit.
_ANSWER = (
    "CAST(:answer AS jsonb) || jsonb_build_object('credits_remaining', moved.credits_remaining)"
)
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


# Generate-video's start, one statement and so one transaction: claim the idempotency key;
# if it is new, debit the user (if the balance covers the cost), write the ledger row, insert
# the job, queue its first step and store the answer. Every write reads `moved` (the debit), so
# a refused debit or a key not new writes nothing; `queued` (a plain SELECT, unlike the other
# steps) runs only because the final SELECT counts it. One round trip where the steps one by
# one took eight (BEGIN and COMMIT included): bench/README.md.
_START = Statement.of(
    f"""
    WITH claimed AS ({idempotency.CLAIM_SQL}),
    {ledger.debit_ctes(when=f"(SELECT outcome FROM claimed) = '{idempotency.Claim.NEW}'")},
    job AS ({jobs.insert_after("moved")}),
    queued AS ({defer_after("moved")}),
    stored AS ({idempotency.store_after("moved", _ANSWER)})
    SELECT c.outcome, c.status_code, c.response_body,
           (SELECT balance_after FROM logged) AS balance, {ledger.AVAILABLE} AS available,
           (SELECT count(*) FROM queued) AS queued
    FROM claimed c
    """  # noqa: S608 - composed of the owners' constants; every value is a bound parameter
)


# The claim alone: a request refused before its start (a model switched off since, say) still
# answers the stored result of its key, as if nothing had been checked before the claim.
_CLAIM_ONLY = Statement.of(idempotency.CLAIM_SQL)


@dataclass(frozen=True)
class Started:
    """The answer to give, and whether it is a replay of one stored before."""

    answer: idempotency.StoredAnswer
    replayed: bool


@dataclass(frozen=True)
class _Job:
    """A checked request: the job to create and what it costs."""

    job_id: uuid.UUID
    cost: int
    answer: dict[str, Any]  # without the balance, which the debit fills in
    parameters: dict[str, Any]  # jobs.insert_parameters


async def start_generation(
    reads: Reads,
    user_id: uuid.UUID,
    body: GenerateIn,
    *,
    key: str,
    fingerprint: str,
    offered: frozenset[str],
    wait_seconds: float,
) -> Started:
    """Check, charge, create and queue a job, or answer the key's stored result."""
    claim = idempotency.claim_parameters(user_id, key, fingerprint, operation=OPERATION)
    try:
        job = await _checked(reads, user_id, body, offered, wait_seconds)
    except AppError:
        stored = _settled(await _made(reads, _CLAIM_ONLY, claim))
        if stored is not None:
            return Started(stored, replayed=True)
        raise
    params = {
        **claim,
        **ledger.debit_parameters(
            user_id,
            job.cost,
            reason=Reason.GENERATION,
            transaction_id=f"generation:{job.job_id}",
            job_id=job.job_id,
        ),
        **job.parameters,
        **defer_parameters(ADVANCE_TASK, {"job_id": str(job.job_id)}, lock=job_lock(job.job_id)),
        "answer": job.answer,
    }
    row = await _made(reads, _START, params)
    stored = _settled(row)
    if stored is not None:
        return Started(stored, replayed=True)
    remaining = ledger.debited(user_id, job.cost, row["balance"], row["available"])
    ledger.counted(Reason.GENERATION, job.cost)
    answer = {**job.answer, "credits_remaining": remaining}
    return Started(idempotency.StoredAnswer(200, answer), replayed=False)


async def _checked(
    reads: Reads,
    user_id: uuid.UUID,
    body: GenerateIn,
    offered: frozenset[str],
    wait_seconds: float,
) -> _Job:
    """The job the request asks for, or the error of the first thing wrong with it."""
    prompt = clean_prompt(body.prompt)
    if prompt is None:
        raise InvalidPrompt({"max_length": MAX_PROMPT})
    model = await offer(reads, body.model_id, offered)
    if model is None:
        raise ModelUnavailable({"model_id": str(body.model_id)})
    settings = _resolve_settings(model.settings, body.settings.model_dump())
    image_url = _image_for(model.settings, str(body.image_url) if body.image_url else None)
    cost = model.price(settings)
    job_id = uuid.uuid4()
    answer = GenerateOut(
        job_id=job_id, status=JobStatus.PENDING, credits_used=cost, credits_remaining=0
    ).model_dump(mode="json", exclude={"credits_remaining"})
    parameters = jobs.insert_parameters(
        job_id=job_id,
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
    return _Job(job_id, cost, answer, parameters)


async def _made(reads: Reads, statement: Statement, params: dict[str, Any]) -> dict[str, Any]:
    row = await reads.one(statement.sql, statement.arguments(params))
    if row is None:  # the claim answers one row, always
        raise RuntimeError("the idempotency claim answered no row")
    return row


def _settled(row: dict[str, Any]) -> idempotency.StoredAnswer | None:
    return idempotency.settle(row["outcome"], row["status_code"], row["response_body"])


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
