"""At its deadline a job gets one more look: a video the provider finished since the last look
(and will bill) is delivered, not refunded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.catalog.schemas import model_id_for
from rendio.providers.local_render import RenderSpec, render_video
from tests.fakes.fal import FakeFal, served_fal
from tests.helpers.clients import guest, open_client
from tests.helpers.factories import FAST_WORKER, generate, wait_for_end
from tests.helpers.settings import SettingsFactory


@pytest.fixture
def fal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFal]:
    video = tmp_path_factory.mktemp("last-look") / "result.mp4"
    render_video(RenderSpec("last look", 1, 160, 96), video)
    with served_fal() as fake:
        fake.video_bytes = video.read_bytes()
        fake.run_seconds = 1.0
        yield fake


async def test_a_video_done_by_the_deadline_is_delivered(
    make_settings: SettingsFactory, db: AsyncSession, fal: FakeFal
) -> None:
    # Looks every 2 s; the fake finishes after 1 s: the look after the deadline is the first
    # to see it done.
    settings = make_settings(**(FAST_WORKER | {"poll_initial": 2, "poll_max": 2}), **fal.settings())
    app = create_app(settings, settings.database_url or "", run_worker=True)
    async for client in open_client(app):
        user = await guest(client)
        body = {"model_id": str(model_id_for("fal-kling-2-1")), "prompt": "just in time"}
        job_id = (await generate(client, user.headers, body)).json()["job_id"]
        for _ in range(100):
            submitted = await db.execute(
                text("SELECT 1 FROM video_jobs WHERE provider_job_id IS NOT NULL")
            )
            await db.commit()
            if submitted.first() is not None:
                break
            await asyncio.sleep(0.05)
        await db.execute(text("UPDATE video_jobs SET deadline_at = now()"))
        await db.commit()
        done = await wait_for_end(client, user.headers, job_id)
        assert done["status"] == "completed", done
        assert not [path for method, path in fal.calls if method == "PUT"]  # nothing cancelled
