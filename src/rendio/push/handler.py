"""Telling users their video ended: the `job_ended` handler plans one push per device, and the
`push:send` task delivers each, retried with backoff on 429, 5xx and network errors.

A push never touches the job: it runs after the job's ending has committed, and its failures
stay in `push_deliveries`. A token Apple calls dead (410, or 400 `BadDeviceToken`) is dropped.
"""

from __future__ import annotations

from typing import Any

import procrastinate
import psycopg
import structlog
from prometheus_client import Counter
from sqlalchemy.exc import OperationalError

from rendio.generation import jobs
from rendio.generation.jobs import JobEnded
from rendio.identity.service import language_of
from rendio.platform.services import services_of
from rendio.push import service
from rendio.push.messages import alert
from rendio.push.service import SEND_TASK
from rendio.push.services import PushServices

log = structlog.get_logger("rendio.push")
PUSHES = Counter("rendio_pushes_total", "APNs pushes, by outcome", ["outcome"])
# Attempts are counted on the delivery row (RENDIO_PUSH_ATTEMPTS decides); procrastinate only
# schedules the retries, with a growing wait.
PUSH_RETRY = procrastinate.RetryStrategy(
    max_attempts=50,
    exponential_wait=2,
    retry_exceptions={ConnectionError, OperationalError, psycopg.OperationalError},
)

__all__ = ["PUSH_RETRY", "SEND_TASK", "notify_job_ended", "send_delivery"]


class PushNotYetDelivered(ConnectionError):
    """APNs was busy or unreachable; the delivery is tried again later."""


async def notify_job_ended(services: PushServices, event: JobEnded) -> None:
    if services.apns is None:
        return
    async with services.sessions() as session:
        ended = await jobs.ended_job(session, event.job_id)
        if ended is None:
            return
        await service.plan(session, event.job_id, ended.user_id)
        await session.commit()


async def send_delivery(context: procrastinate.JobContext, delivery_id: int) -> None:
    services = services_of(context.additional_context, PushServices)
    if services.apns is None:
        return
    async with services.sessions() as session:
        delivery = await service.load(session, delivery_id)
        if delivery is None or delivery.status != "pending":
            return
        ended = await jobs.ended_job(session, delivery.job_id) if delivery.job_id else None
        if delivery.token is None or ended is None:
            reason = "token gone" if delivery.token is None else "job gone"
            await service.record(session, delivery_id, "dropped", tried=False, reason=reason)
            await session.commit()
            PUSHES.labels("dropped").inc()
            return
        language = await language_of(session, ended.user_id)
    payload: dict[str, Any] = {
        "aps": {"alert": alert(language, ended.status, ended.credits_used), "sound": "default"},
        "job_id": str(delivery.job_id),
        "status": ended.status.value,
    }
    answer = await services.apns.send(delivery.token, delivery.environment or "production", payload)
    outcome = _outcome(answer.status, answer.retryable, answer.token_is_dead, delivery, services)
    async with services.sessions() as session:
        if answer.token_is_dead and delivery.token_id is not None:
            await service.forget_token(session, delivery.token_id)
        status = {"sent": "sent", "retry": "pending"}.get(outcome, "failed")
        await service.record(
            session, delivery_id, status, tried=True, apns_id=answer.apns_id, reason=answer.reason
        )
        await session.commit()
    PUSHES.labels(outcome).inc()
    log.info("push", delivery=delivery_id, outcome=outcome, status=answer.status)
    if outcome == "retry":
        raise PushNotYetDelivered(f"APNs answered {answer.status or 'nothing'}")


def _outcome(
    status: int, retryable: bool, dead: bool, delivery: service.Delivery, services: PushServices
) -> str:
    if status == 200:
        return "sent"
    if dead:
        return "token_removed"
    if retryable and delivery.attempts + 1 < services.settings.push_attempts:
        return "retry"
    return "failed"
