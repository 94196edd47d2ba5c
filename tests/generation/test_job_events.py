"""Ending a job publishes `job_ended` in the same transaction; the composition root fans it
out to its handlers."""

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio import tasks
from rendio.generation import jobs
from rendio.generation.jobs import JOB_ENDED_TASK, JobEnded, JobStatus
from rendio.platform.errors import ErrorCode
from tests.helpers.clients import app_of, guest
from tests.helpers.factories import generate, wait_for_end


async def events(db: AsyncSession) -> list[dict[str, Any]]:
    rows = await db.execute(
        text("SELECT args FROM procrastinate_jobs WHERE task_name = :task ORDER BY id"),
        {"task": JOB_ENDED_TASK},
    )
    return [dict(row) for row in rows.scalars()]


async def test_an_ending_is_published_once_and_only_when_it_commits(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    job_id = uuid.UUID((await generate(client, headers)).json()["job_id"])
    assert await jobs.fail(db, job_id, ErrorCode.PROVIDER_REJECTED, "rolled back")
    await db.rollback()
    assert await events(db) == []

    assert await jobs.fail(db, job_id, ErrorCode.PROVIDER_REJECTED, "first")
    assert not await jobs.fail(db, job_id, ErrorCode.PROVIDER_TIMEOUT, "second")
    await db.commit()
    [event] = await events(db)
    assert event["job_id"] == str(job_id)
    assert (event["status"], event["provider"]) == ("failed", "local")
    assert event["seconds"] >= 0


async def test_the_worker_runs_the_handlers_of_each_ending(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """The composition root's handlers run in the worker: the metric counts the ending and the
    event task succeeds."""
    before = tasks.JOBS_ENDED.labels("completed", "local")._value.get()
    headers = (await guest(worker_client)).headers
    job_id = (await generate(worker_client, headers)).json()["job_id"]
    assert (await wait_for_end(worker_client, headers, job_id))["status"] == "completed"
    for _ in range(100):
        done = await db.execute(
            text("SELECT status FROM procrastinate_jobs WHERE task_name = :task"),
            {"task": JOB_ENDED_TASK},
        )
        if done.scalars().all() == ["succeeded"]:
            break
        await db.rollback()
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the job_ended task did not succeed")
    assert tasks.JOBS_ENDED.labels("completed", "local")._value.get() == before + 1


async def test_every_handler_hears_the_event(worker_client: httpx.AsyncClient) -> None:
    heard: list[tuple[str, JobEnded]] = []

    def handler(name: str) -> tasks.JobEndedHandler:
        async def hear(services: Any, event: JobEnded) -> None:
            heard.append((name, event))

        return hear

    fan_out = tasks._job_ended([handler("push"), handler("metrics")])
    context = SimpleNamespace(additional_context={"services": app_of(worker_client).state.services})
    job_id = uuid.uuid4()
    await fan_out(context, job_id=str(job_id), status="failed", provider="local", seconds=2.5)
    event = JobEnded(job_id, JobStatus.FAILED, "local", 2.5)
    assert heard == [("push", event), ("metrics", event)]
