"""A worker killed in the middle of a sweep must not stop recovery (issue 10, defect 2)."""

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.clients import guest
from tests.helpers.factories import generate

# What a worker killed with -9 during a sweep leaves: the sweep `doing`, holding the lock the
# sweep task used to take, owned by no live worker.
_LEFT_BY_A_DEAD_WORKER = [
    "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'generation:sweep', 0, "
    "'generation:sweep', NULL, '{\"timestamp\": 0}'::jsonb, NULL)"
    "::procrastinate_job_to_defer_v1])",
    "UPDATE procrastinate_jobs SET status = 'doing', worker_id = NULL "
    "WHERE task_name = 'generation:sweep' AND status = 'todo'",
]


async def test_a_sweep_left_doing_by_a_dead_worker_does_not_block_recovery(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = worker_client
    headers = (await guest(client)).headers
    job_id = (await generate(client, headers)).json()["job_id"]
    # A job whose task was lost and whose deadline passed long ago: only a sweep can end it.
    await db.execute(text("DELETE FROM procrastinate_jobs WHERE task_name <> 'generation:sweep'"))
    await db.execute(
        text("UPDATE video_jobs SET status = 'processing', deadline_at = now() - interval '1 hour'")
    )
    await db.execute(text("DELETE FROM procrastinate_jobs WHERE task_name = 'generation:sweep'"))
    for statement in _LEFT_BY_A_DEAD_WORKER:
        await db.execute(text(statement))
    await db.commit()

    for _ in range(150):
        status = (
            await client.get(
                "/functions/v1/get-video-status", params={"job_id": job_id}, headers=headers
            )
        ).json()
        if status["status"] == "failed":
            break
        await asyncio.sleep(0.1)
    assert status["status"] == "failed", "no sweep ran: recovery is wedged"
    assert status["error"]["code"] == "ERR_5001"
    refunds = await db.execute(
        text("SELECT change FROM quota_log WHERE reason = 'refund' AND job_id = :id"),
        {"id": job_id},
    )
    assert refunds.scalars().all() == [1]
    # The dead worker's sweep itself was run again rather than left `doing` forever.
    left = -1
    for _ in range(50):
        await db.rollback()
        left = (
            await db.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'generation:sweep' "
                    "AND status = 'doing' AND worker_id IS NULL"
                )
            )
        ).scalar_one()
        if left == 0:
            break
        await asyncio.sleep(0.1)
    assert left == 0
