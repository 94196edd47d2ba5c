"""With `RENDIO_STORAGE=s3` a finished video and its thumbnail go to the bucket, clients get
presigned links that the bucket serves, and deleting the account removes the objects."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import av
import httpx
import pytest
from PIL import Image

from rendio.app import create_app
from tests.helpers.clients import guest, open_client
from tests.helpers.factories import FAST_WORKER, generate, wait_for_end
from tests.helpers.s3 import FakeS3
from tests.helpers.settings import SettingsFactory


@pytest.fixture
def bucket(s3: FakeS3) -> str:
    return s3.new_bucket()


@pytest.fixture
async def s3_client(
    make_settings: SettingsFactory, s3: FakeS3, bucket: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(**FAST_WORKER, **s3.settings(bucket))
    app = create_app(settings, settings.database_url or "", run_worker=True)
    async for http in open_client(app):
        yield http


async def test_videos_live_in_the_bucket_behind_presigned_links(
    s3_client: httpx.AsyncClient, s3: FakeS3, bucket: str
) -> None:
    user = await guest(s3_client)
    job_id = (await generate(s3_client, user.headers)).json()["job_id"]
    status = await wait_for_end(s3_client, user.headers, job_id)
    assert status["status"] == "completed", status
    assert len(s3.keys(bucket)) == 2
    assert status["video_url"].startswith(f"{s3.endpoint}/{bucket}/videos/{job_id}/")
    assert "X-Amz-Signature=" in status["video_url"]

    video = httpx.get(status["video_url"], timeout=10)
    assert video.status_code == 200
    with av.open(io.BytesIO(video.content)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    thumbnail = httpx.get(status["thumbnail_url"], timeout=10)
    assert Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"

    deleted = await s3_client.post("/functions/v1/delete-account", headers=user.headers)
    assert deleted.status_code == 200
    assert s3.keys(bucket) == []
