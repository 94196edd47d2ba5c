"""The worker end to end (in-process): a real MP4, every failure point refunded exactly once,
the sweeper's recoveries, and get-video-status."""

import asyncio
import io
import uuid
from pathlib import Path
from typing import Any

import av
import httpx
from PIL import Image
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation import jobs
from rendio.generation.sweeper import sweep_once
from rendio.platform.errors import ErrorCode
from tests.helpers.clients import app_of, guest
from tests.helpers.factories import add_models, generate, simulated_model, video_body, wait_for_end


async def refunds(db: AsyncSession, job_id: str) -> list[int]:
    rows = await db.execute(
        text("SELECT change FROM quota_log WHERE job_id = :j AND reason = 'refund'"), {"j": job_id}
    )
    return [row[0] for row in rows]


async def balance(db: AsyncSession) -> int:
    return (await db.execute(text("SELECT credits_remaining FROM users"))).scalar_one()


async def test_the_local_model_makes_a_real_video(
    worker_client: httpx.AsyncClient, db: AsyncSession, tmp_path: Path
) -> None:
    client = worker_client
    headers = (await guest(client)).headers
    job = (await generate(client, headers, video_body(duration=2))).json()
    status = await wait_for_end(client, headers, job["job_id"])
    assert status["status"] == "completed", status
    assert status["progress"] == 100
    assert status["error"] is None
    assert status["completed_at"] is not None
    assert status["credits_used"] == 1

    video = await client.get(status["video_url"])
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    path = tmp_path / "v.mp4"
    path.write_bytes(video.content)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (640, 360)
        assert float(container.duration / av.time_base) == 2.0
    thumbnail = await client.get(status["thumbnail_url"])
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(thumbnail.content)).size == (640, 360)

    forged = status["video_url"].replace("sig=", "sig=0")
    assert (await client.get(forged)).status_code == 404
    expired = status["video_url"].split("?")[0] + "?expires=1&sig=abc"
    assert (await client.get(expired)).status_code == 404
    assert await balance(db) == 9
    assert await refunds(db, job["job_id"]) == []


async def _run_simulated(
    client: httpx.AsyncClient, database_url: str, slug: str, **options: Any
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    (model_id,) = add_models(database_url, simulated_model(slug, **options))
    headers = (await guest(client)).headers
    job = (await generate(client, headers, video_body(model_id=model_id, duration=1))).json()
    assert job["credits_remaining"] == 8
    return headers, job, await wait_for_end(client, headers, job["job_id"])


async def test_a_rejected_submit_fails_and_refunds_once(
    worker_client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    _, job, status = await _run_simulated(worker_client, clean_database, "rej", simulate="reject")
    assert status["status"] == "failed"
    assert status["error"]["code"] == "ERR_5003"
    assert await refunds(db, job["job_id"]) == [2]
    assert await balance(db) == 10


async def test_an_unavailable_provider_is_retried_then_refunded(
    worker_client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    _, job, status = await _run_simulated(
        worker_client, clean_database, "down", simulate="unavailable"
    )
    assert status["error"]["code"] == "ERR_5002"
    assert await refunds(db, job["job_id"]) == [2]


async def test_a_flaky_provider_succeeds_after_retries(
    worker_client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    _, job, status = await _run_simulated(
        worker_client, clean_database, "flaky", simulate="flaky", flaky_failures=2
    )
    assert status["status"] == "completed", status
    assert await refunds(db, job["job_id"]) == []
    assert await balance(db) == 8


async def test_a_provider_reported_failure_is_refunded(
    worker_client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    headers, job, status = await _run_simulated(
        worker_client, clean_database, "fails", simulate="fail"
    )
    assert status["error"]["code"] == "ERR_5003"
    turkish = await worker_client.get(
        "/functions/v1/get-video-status",
        params={"job_id": job["job_id"]},
        headers={**headers, "Accept-Language": "tr"},
    )
    assert turkish.json()["error"]["message"] != status["error"]["message"]
    assert await refunds(db, job["job_id"]) == [2]


async def test_a_job_past_its_deadline_is_cancelled_and_refunded(
    worker_client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    (model_id,) = add_models(clean_database, simulated_model("hangs", simulate="hang"))
    headers = (await guest(worker_client)).headers
    job = (await generate(worker_client, headers, video_body(model_id=model_id, duration=1))).json()
    # The deadline counts from submission: shorten it once the provider has the job.
    for _ in range(100):
        submitted = await db.execute(
            text("SELECT 1 FROM video_jobs WHERE provider_job_id IS NOT NULL")
        )
        await db.commit()
        if submitted.first() is not None:
            break
        await asyncio.sleep(0.05)
    await db.execute(
        text("UPDATE video_jobs SET deadline_at = now() + interval '1 second'"),
    )
    await db.commit()
    status = await wait_for_end(worker_client, headers, job["job_id"], timeout=20)
    assert status["error"]["code"] == "ERR_5001"
    assert await refunds(db, job["job_id"]) == [2]


async def test_ending_a_job_twice_refunds_once(client: httpx.AsyncClient, db: AsyncSession) -> None:
    headers = (await guest(client)).headers
    job_id = uuid.UUID((await generate(client, headers)).json()["job_id"])
    assert await jobs.fail(db, job_id, ErrorCode.PROVIDER_REJECTED, "first")
    assert not await jobs.fail(db, job_id, ErrorCode.PROVIDER_TIMEOUT, "second")
    await db.commit()
    assert await refunds(db, str(job_id)) == [1]
    assert await balance(db) == 10


async def test_progress_is_written_only_when_it_moves_forward(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """A poll that finds the job where it was writes nothing: each write also fires the change
    trigger, a NOTIFY every API process hears."""
    headers = (await guest(client)).headers
    job_id = uuid.UUID((await generate(client, headers)).json()["job_id"])
    await db.execute(
        text("UPDATE video_jobs SET status = 'processing' WHERE job_id = :j"), {"j": job_id}
    )
    await db.commit()

    async def reported(progress: int) -> tuple[int, str]:
        await jobs.report_progress(db, job_id, progress)
        await db.commit()
        row = await db.execute(
            text("SELECT progress, xmin::text FROM video_jobs WHERE job_id = :j"), {"j": job_id}
        )
        return tuple(row.one())  # type: ignore[return-value]  # (int, str) by the query

    first, version = await reported(40)
    assert first == 40
    assert await reported(40) == (40, version)  # xmin unchanged: no new row version
    assert await reported(10) == (40, version)
    assert (await reported(100))[0] == 99  # 100 only with the video


async def test_the_sweeper_fails_overdue_jobs_and_requeues_stranded_ones(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = worker_client
    headers = (await guest(client)).headers
    overdue = (await generate(client, headers)).json()["job_id"]
    stranded = (await generate(client, headers)).json()["job_id"]
    await wait_for_end(client, headers, overdue)
    await wait_for_end(client, headers, stranded)
    # Put both back as if a crash had lost their tasks: one submitted and long past its
    # deadline (a job still waiting for a slot would fail as ERR_5002 instead), one waiting.
    await db.execute(
        text(
            "UPDATE video_jobs SET progress = 0, provider_job_id = NULL, "
            "status = CASE WHEN job_id = :o THEN 'processing' ELSE 'pending' END, "
            "completed_at = NULL, updated_at = now() - interval '1 hour', "
            "deadline_at = CASE WHEN job_id = :o THEN now() - interval '1 hour' "
            "ELSE now() + interval '10 minutes' END"
        ),
        {"o": overdue},
    )
    await db.execute(text("DELETE FROM procrastinate_jobs"))
    await db.commit()
    app = app_of(client)
    done = await sweep_once(app.state.queue, app.state.services)
    assert done["overdue"] == 1
    assert done["requeued"] == 1
    assert (await wait_for_end(client, headers, overdue))["error"]["code"] == "ERR_5001"
    assert (await wait_for_end(client, headers, stranded))["status"] == "completed"
    assert await refunds(db, overdue) == [1]
    assert await refunds(db, stranded) == []


async def test_status_is_private_and_validated(client: httpx.AsyncClient) -> None:
    alice = (await guest(client, "install-a")).headers
    bob = (await guest(client, "install-b")).headers
    job_id = (await generate(client, alice)).json()["job_id"]
    mine = await client.post(
        "/functions/v1/get-video-status", json={"job_id": job_id}, headers=alice
    )
    assert mine.status_code == 200
    assert mine.json()["status"] == "pending"
    assert mine.json()["video_url"] is None
    theirs = await client.get(
        "/functions/v1/get-video-status", params={"job_id": job_id}, headers=bob
    )
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "ERR_4011"
    unknown = await client.get(
        "/functions/v1/get-video-status", params={"job_id": str(uuid.uuid4())}, headers=alice
    )
    assert unknown.status_code == 404
    for params in ({"job_id": "nope"}, {}):
        bad = await client.get("/functions/v1/get-video-status", params=params, headers=alice)
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "ERR_4013"
    assert (
        await client.get("/functions/v1/get-video-status", params={"job_id": job_id})
    ).status_code == 401


async def test_delete_account_removes_the_videos(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = worker_client
    headers = (await guest(client)).headers
    job_id = (await generate(client, headers)).json()["job_id"]
    status = await wait_for_end(client, headers, job_id)
    storage = app_of(client).state.services.storage
    keys = (await db.execute(text("SELECT video_url, thumbnail_url FROM video_jobs"))).one()
    assert all(storage.local_path(key) is not None for key in keys)
    assert (await client.post("/functions/v1/delete-account", headers=headers)).status_code == 200
    assert all(storage.local_path(key) is None for key in keys)
    assert (await client.get(status["video_url"])).status_code == 404
    assert (await db.execute(text("SELECT count(*) FROM video_jobs"))).scalar_one() == 0


async def test_a_storage_failure_fails_the_job_and_refunds(
    worker_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = worker_client
    settings = app_of(client).state.services.settings
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "media").write_text("a file where the media folder should be")
    headers = (await guest(client)).headers
    job_id = (await generate(client, headers)).json()["job_id"]
    status = await wait_for_end(client, headers, job_id)
    assert status["error"]["code"] == "ERR_6002"
    assert await refunds(db, job_id) == [1]


async def test_media_links_refuse_hostile_input(client: httpx.AsyncClient) -> None:
    future = 4_000_000_000
    for url in (
        "/media/" + "a" * 300 + f"?expires={future}&sig=" + "0" * 64,
        f"/media/videos/x/video.mp4?expires={future}&sig=%C3%A9",
        f"/media/../../etc/passwd?expires={future}&sig=" + "0" * 64,
        "/media/videos/x/video.mp4?expires=soon&sig=x",
        "/media/videos/x/video.mp4",
    ):
        response = await client.get(url)
        assert response.status_code in (404, 422), url
        assert response.json()["error"]["code"] in ("ERR_4011", "ERR_4013"), url


async def test_a_late_second_run_never_deletes_the_winners_video(
    worker_client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Two runs of one job can overlap when a slow worker is presumed dead; the loser of the
    completion compare-and-swap removes only its own copies."""
    from rendio.generation import runner
    from rendio.providers.base import PollResult
    from rendio.providers.local_render import RenderSpec, render_video

    client = worker_client
    headers = (await guest(client)).headers
    job_id = (await generate(client, headers)).json()["job_id"]
    status = await wait_for_end(client, headers, job_id)
    app = app_of(client)
    services = app.state.services
    async with services.sessions() as session:
        job = await jobs.load(session, uuid.UUID(job_id))
    assert job is not None
    late_video = tmp_path / "late.mp4"
    render_video(RenderSpec("late", 1, 320, 180), late_video)
    request = runner._request(services, job)
    await runner.finish(services, request, PollResult("completed", video=late_video))
    again = await client.get(status["video_url"])
    assert again.status_code == 200
    media = services.settings.data_dir / "media" / "videos" / job_id
    assert len(list(media.iterdir())) == 1, "only the winner's run folder is left"


async def test_the_sweeper_removes_scratch_folders_of_ended_jobs(
    client: httpx.AsyncClient,
) -> None:
    import os

    headers = (await guest(client)).headers
    open_job = (await generate(client, headers)).json()["job_id"]  # pending: no worker here
    app = app_of(client)
    services = app.state.services
    folders = {name: services.workdir / name for name in (open_job, str(uuid.uuid4()), "not-a-job")}
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "video.mp4").write_bytes(b"partial")
        os.utime(folder, (0, 0))
    done = await sweep_once(app.state.queue, services)
    assert done["cleaned"] == 1
    assert {name for name, folder in folders.items() if folder.exists()} == {
        open_job,
        "not-a-job",
    }
