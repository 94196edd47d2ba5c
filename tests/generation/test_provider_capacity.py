"""A cap on jobs in flight per provider: beyond it jobs wait `pending`, fairly across users;
the deadline counts from submission; a job that waits too long is refunded."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.generation import jobs
from rendio.generation.jobs import Start
from tests.helpers.clients import guest, open_client
from tests.helpers.factories import (
    FAST_WORKER,
    LOCAL_ID,
    add_models,
    generate,
    simulated_model,
    video_body,
    wait_for_end,
)
from tests.helpers.settings import SettingsFactory


async def pending_job(db: AsyncSession, user_id: str, age_seconds: int) -> uuid.UUID:
    job_id = (
        await db.execute(
            text(
                "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, "
                "credits_used, deadline_seconds, deadline_at, created_at) VALUES (:u, :m, 'x', "
                "'{}'::jsonb, 'local', 0, 300, now() + interval '1 hour', "
                "now() - make_interval(secs => :age)) RETURNING job_id"
            ),
            {"u": user_id, "m": LOCAL_ID, "age": age_seconds},
        )
    ).scalar_one()
    await db.commit()
    return uuid.UUID(str(job_id))


async def start(db: AsyncSession, job_id: uuid.UUID, capacity: int) -> Start:
    started = await jobs.start(db, job_id, "local", capacity)
    await db.commit()
    return started


async def test_a_free_slot_goes_to_the_user_with_fewer_jobs_in_flight(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    busy, patient = await guest(client, "busy"), await guest(client, "patient")
    first = await pending_job(db, busy.user_id, 30)
    second = await pending_job(db, busy.user_id, 20)  # older than the other user's job
    theirs = await pending_job(db, patient.user_id, 10)

    assert await start(db, first, capacity=2) is Start.STARTED
    assert await start(db, second, capacity=2) is Start.WAITING  # the other user goes first
    assert await start(db, theirs, capacity=2) is Start.STARTED
    assert await start(db, second, capacity=2) is Start.WAITING  # no slot left
    await db.execute(
        text("UPDATE video_jobs SET status = 'completed' WHERE job_id = :j"), {"j": first}
    )
    await db.commit()
    assert await start(db, second, capacity=2) is Start.STARTED
    assert await start(db, second, capacity=2) is Start.STARTED  # a rerun keeps its slot
    await db.execute(
        text("UPDATE video_jobs SET status = 'failed' WHERE job_id = :j"), {"j": theirs}
    )
    await db.commit()
    assert await start(db, theirs, capacity=2) is Start.ENDED


async def test_the_deadline_counts_from_submission_not_from_the_request(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client)
    job = await pending_job(db, user.user_id, 3000)  # waited 50 minutes for a slot
    assert await start(db, job, capacity=1) is Start.STARTED
    left = (
        await db.execute(
            text(
                "SELECT EXTRACT(EPOCH FROM deadline_at - now()) FROM video_jobs WHERE job_id = :j"
            ),
            {"j": job},
        )
    ).scalar_one()
    await db.commit()
    assert 295 < float(left) <= 300  # the model's 300 s, from now


async def test_a_capped_provider_runs_one_job_at_a_time_and_refunds_one_that_waits_too_long(
    make_settings: SettingsFactory, db: AsyncSession, clean_database: str
) -> None:
    [hangs] = add_models(clean_database, simulated_model("hangs", simulate="hang", cost=2))
    settings = make_settings(**FAST_WORKER, provider_max_in_flight=1)
    app = create_app(settings, settings.database_url or "", run_worker=True)
    async for client in open_client(app):
        user = await guest(client)
        stuck = (await generate(client, user.headers, video_body(hangs))).json()["job_id"]
        waiting = (await generate(client, user.headers, video_body(hangs))).json()["job_id"]

        async def states() -> dict[str, Any]:
            rows = await db.execute(text("SELECT job_id::text, status FROM video_jobs"))
            found = dict(rows.all())
            await db.commit()
            return found

        for _ in range(50):
            if (await states()).get(stuck) == "processing":
                break
            await asyncio.sleep(0.1)
        assert await states() == {stuck: "processing", waiting: "pending"}
        # The waiting job's time to wait for a slot runs out.
        await db.execute(
            text(
                "UPDATE video_jobs SET deadline_at = now() - interval '1 second' WHERE job_id = :j"
            ),
            {"j": waiting},
        )
        await db.commit()
        ended = await wait_for_end(client, user.headers, waiting)
        assert ended["status"] == "failed" and ended["error"]["code"] == "ERR_5002"
        refunds = await db.execute(
            text("SELECT change FROM quota_log WHERE job_id = :j AND reason = 'refund'"),
            {"j": waiting},
        )
        assert list(refunds.scalars()) == [2]
        await db.commit()
        # Let the stuck one end too, so the app stops cleanly.
        await db.execute(
            text(
                "UPDATE video_jobs SET deadline_at = now() - interval '1 second' WHERE job_id = :j"
            ),
            {"j": stuck},
        )
        await db.commit()
        assert (await wait_for_end(client, user.headers, stuck))["error"]["code"] == "ERR_5001"
