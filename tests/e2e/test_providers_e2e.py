"""A video through each remaining adapter, end to end: `rendio serve` with its worker against
the fake Runway (polled: it has no webhooks), the fake OpenAI-compatible gateway (its signed
`video.completed` event makes the worker look at once) and the fake Replicate (it calls back by
itself, signed with the secret our service fetches from its API)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from rendio.catalog.schemas import model_id_for
from rendio.platform.db import sync_engine
from rendio.providers.local_render import RenderSpec, render_video
from tests.fakes.openai_videos import WEBHOOK_SECRET, served_videos_gateway, sign_webhook
from tests.fakes.replicate import served_replicate
from tests.fakes.runway import FakeRunway, served_runway
from tests.helpers.live import wait_until
from tests.helpers.processes import credits_verify, fast_env, free_port, start_server


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    video = tmp_path_factory.mktemp("result") / "result.mp4"
    render_video(RenderSpec("provider result", 1, 160, 96), video)
    return video.read_bytes()


def sign_in(http: httpx.Client) -> dict[str, str]:
    body = http.post(
        "/functions/v1/device-check", json={"device_id": "maker", "device_token": "t"}
    ).json()
    return {"Authorization": f"Bearer {body['session']['access_token']}"}


def make(http: httpx.Client, headers: dict[str, str], body: dict[str, object]) -> str:
    answer = http.post(
        "/functions/v1/generate-video",
        json=body,
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


def submitted_as(database_url: str, job_id: str, timeout: float = 20) -> str:
    """The provider's id for the job, once the worker has submitted it."""
    engine = sync_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(
                    text("SELECT provider_job_id FROM video_jobs WHERE job_id = :j"),
                    {"j": job_id},
                ).scalar_one()
            if found is not None:
                return str(found)
            time.sleep(0.1)
    finally:
        engine.dispose()
    raise AssertionError(f"job {job_id} was never submitted")


@pytest.fixture
def runway(mp4: bytes) -> Iterator[FakeRunway]:
    with served_runway() as fake:
        fake.video_bytes = mp4
        yield fake


def test_runway_is_polled_to_a_stored_video(
    runway: FakeRunway, clean_database: str, tmp_path: Path
) -> None:
    env = fast_env(clean_database, tmp_path / "data", **runway.env())
    server = start_server([], env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            headers = sign_in(http)
            job_id = make(
                http,
                headers,
                {
                    "model_id": str(model_id_for("runway-gen4-turbo")),
                    "prompt": "the still comes alive",
                    "image_url": "https://images.example.com/still.png",
                },
            )
            done = wait_until(http, headers, job_id, {"completed", "failed"}, timeout=60)
            assert done["status"] == "completed", done
            assert httpx.get(done["video_url"], timeout=10).content == runway.video_bytes
            [create] = runway.calls("POST")
            assert create.path == "/v1/image_to_video"
            assert create.body["promptImage"] == "https://images.example.com/still.png"
    finally:
        server.stop()
    assert credits_verify(clean_database).returncode == 0


def test_an_openai_compatible_gateway_s_event_completes_a_video(
    mp4: bytes, clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    with served_videos_gateway() as gateway:
        gateway.video_bytes = mp4
        env = fast_env(
            clean_database,
            tmp_path / "data",
            RENDIO_OPENAI_API_KEY=gateway.api_key,
            RENDIO_OPENAI_BASE_URL=gateway.url,
            RENDIO_OPENAI_WEBHOOK_SECRET=WEBHOOK_SECRET,
            RENDIO_PUBLIC_URL=f"http://127.0.0.1:{port}",
            # The first scheduled look comes after 30 s: sooner means the event did it.
            RENDIO_POLL_INITIAL="30",
            RENDIO_POLL_MAX="30",
        )
        server = start_server([], env, tmp_path / "server.log", port=port)
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                headers = sign_in(http)
                job_id = make(
                    http,
                    headers,
                    {"model_id": str(model_id_for("sora-2")), "prompt": "a paper plane"},
                )
                video_id = submitted_as(clean_database, job_id)
                gateway.set_script(video_id, "completed")
                body, signed = sign_webhook(gateway.webhook_event(video_id))
                delivered = http.post("/webhooks/openai", content=body, headers=signed)
                assert delivered.json() == {"outcome": "queued"}, delivered.text
                done = wait_until(http, headers, job_id, {"completed", "failed"}, timeout=20)
                assert done["status"] == "completed", done
                assert httpx.get(done["video_url"], timeout=10).content == mp4
                polls = [c for c in gateway.calls("GET") if c.path.endswith(video_id)]
                assert len(polls) == 1  # the look-now, not the schedule
        finally:
            server.stop()
    assert credits_verify(clean_database).returncode == 0


def test_replicate_calls_back_and_the_video_is_stored(
    mp4: bytes, clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    with served_replicate() as replicate:
        replicate.video_bytes = mp4
        replicate.run_seconds = 0.5
        env = fast_env(
            clean_database,
            tmp_path / "data",
            **replicate.env(),
            RENDIO_PUBLIC_URL=f"http://127.0.0.1:{port}",
            RENDIO_POLL_INITIAL="30",
            RENDIO_POLL_MAX="30",
        )
        server = start_server([], env, tmp_path / "server.log", port=port)
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                headers = sign_in(http)
                job_id = make(
                    http,
                    headers,
                    {"model_id": str(model_id_for("replicate-minimax-video-01")), "prompt": "rain"},
                )
                done = wait_until(http, headers, job_id, {"completed", "failed"}, timeout=20)
                assert done["status"] == "completed", done
                assert replicate.deliveries == [200]
                assert httpx.get(done["video_url"], timeout=10).content == mp4
                [create] = replicate.calls("POST")[:1]
                assert create.path == "/v1/models/minimax/video-01/predictions"
                assert create.body["webhook_events_filter"] == ["completed"]
        finally:
            server.stop()
    assert credits_verify(clean_database).returncode == 0
