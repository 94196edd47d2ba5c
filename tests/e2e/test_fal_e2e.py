"""fal end to end: `rendio serve` with its worker against the fake fal over real HTTP — a job
completed by its signed webhook, one whose webhook is forged (refused; polling completes it),
and, polling only, a job through 429/500/slow answers, one whose result URL expired and one
whose result is not a video (each refunded once), and one cancelled at its deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rendio.catalog.schemas import model_id_for
from rendio.platform.db import sync_engine
from rendio.providers.local_render import RenderSpec, render_video
from tests.fakes.fal import FakeFal, served_fal
from tests.helpers.factories import add_models
from tests.helpers.live import wait_until
from tests.helpers.processes import credits_verify, fast_env, free_port, start_server

KLING = str(model_id_for("fal-kling-2-1"))
SHORT = (
    "  - {slug: fal-short, name: Short deadline, category: test, provider: fal, "
    "provider_model_id: fal-ai/test-model, cost_per_generation: 3, deadline_seconds: 10, "
    "settings: {durations: [5], default_duration: 5, aspect_ratios: ['16:9'], "
    "default_aspect_ratio: '16:9', resolutions: [720p], default_resolution: 720p}}\n"
)


@pytest.fixture(scope="module")
def fal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFal]:
    video = tmp_path_factory.mktemp("fal") / "result.mp4"
    render_video(RenderSpec("fal result", 1, 160, 96), video)
    with served_fal() as fake:
        fake.video_bytes = video.read_bytes()
        yield fake


@pytest.fixture
def fake(fal: FakeFal) -> FakeFal:
    for log in (fal.faults, fal.requests, fal.calls, fal.deliveries):
        log.clear()
    fal.expired = fal.forge_webhooks = False
    fal.outcome, fal.queue_seconds, fal.run_seconds = "ok", 0.2, 0.5
    return fal


def sign_in(http: httpx.Client) -> dict[str, str]:
    body = http.post(
        "/functions/v1/device-check", json={"device_id": "fal-user", "device_token": "t"}
    ).json()
    return {"Authorization": f"Bearer {body['session']['access_token']}"}


def make(http: httpx.Client, headers: dict[str, str], model_id: str = KLING) -> str:
    answer = http.post(
        "/functions/v1/generate-video",
        json={"model_id": model_id, "prompt": "waves at dawn"},
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["job_id"])


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = sync_engine(database_url)
    with engine.connect() as conn:
        found = list(conn.execute(text(sql), params))
    engine.dispose()
    return found


def submitted_as(database_url: str, job_id: str) -> None:
    """Wait until the worker has handed the job to fal."""
    for _ in range(200):
        found = rows(
            database_url,
            "SELECT 1 FROM video_jobs WHERE job_id = :j AND provider_job_id IS NOT NULL",
            j=job_id,
        )
        if found:
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} was never submitted")


def status_polls(fake: FakeFal, database_url: str, job_id: str) -> int:
    [(request_id,)] = rows(
        database_url, "SELECT provider_job_id FROM video_jobs WHERE job_id = :j", j=job_id
    )
    return sum(1 for _, path in fake.calls if path.endswith(f"{request_id}/status"))


def test_a_signed_webhook_completes_a_job_and_a_forged_one_is_refused(
    fake: FakeFal, clean_database: str, tmp_path: Path
) -> None:
    port = free_port()
    env = fast_env(
        clean_database,
        tmp_path / "data",
        **fake.env(),
        # Polling waits 3 s before its first look: a job done sooner was done by its webhook.
        RENDIO_POLL_INITIAL="3",
        RENDIO_POLL_MAX="3",
        RENDIO_PUBLIC_URL=f"http://127.0.0.1:{port}",
    )
    server = start_server([], env, tmp_path / "server.log", port=port)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            headers = sign_in(http)
            by_webhook = make(http, headers)
            done = wait_until(http, headers, by_webhook, {"completed", "failed"}, timeout=30)
            assert done["status"] == "completed", done
            assert fake.deliveries == [200]
            assert status_polls(fake, clean_database, by_webhook) == 1  # the look-now

            fake.forge_webhooks = True
            forged = make(http, headers)
            done = wait_until(http, headers, forged, {"completed", "failed"}, timeout=30)
            assert done["status"] == "completed", done  # by polling
            assert fake.deliveries == [200, 401]
            video = httpx.get(done["video_url"], timeout=10)
            assert video.status_code == 200 and video.content == fake.video_bytes
    finally:
        server.stop()
    recorded = rows(clean_database, "SELECT source, event_type FROM webhook_deliveries")
    assert [tuple(row) for row in recorded] == [("fal", "OK")]
    assert credits_verify(clean_database).returncode == 0


def test_polling_survives_errors_refunds_bad_results_and_cancels_at_the_deadline(
    fake: FakeFal, clean_database: str, tmp_path: Path
) -> None:
    [short] = add_models(clean_database, SHORT)
    env = fast_env(clean_database, tmp_path / "data", **fake.env(), RENDIO_PROVIDER_TIMEOUT="1")
    server = start_server([], env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            headers = sign_in(http)
            fake.run_seconds = 3
            fake.faults.extend([429, 500])  # refused twice: submitted on the third try
            flaky = make(http, headers)
            submitted_as(clean_database, flaky)
            fake.faults.append("slow")  # then a status look times out, and is tried again
            done = wait_until(http, headers, flaky, {"completed", "failed"}, timeout=60)
            assert done["status"] == "completed", done
            assert fake.faults == []
            fake.run_seconds = 0.5

            # A create whose answer is lost may have been carried out: never sent twice.
            fake.faults.append("slow")
            lost = make(http, headers)
            done = wait_until(http, headers, lost, {"completed", "failed"}, timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "ERR_5002", done
            assert sum(1 for method, _ in fake.calls if method == "POST") == 4
            assert all(request.webhook is None for request in fake.requests.values())

            fake.expired = True
            expired = make(http, headers)
            done = wait_until(http, headers, expired, {"completed", "failed"}, timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "ERR_6002", done

            fake.expired = False
            good_video, fake.video_bytes = fake.video_bytes, b"<html>not a video</html>"
            garbage = make(http, headers)
            done = wait_until(http, headers, garbage, {"completed", "failed"}, timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "ERR_5003", done
            fake.video_bytes = good_video

            fake.run_seconds = 600
            late = make(http, headers, short)
            done = wait_until(http, headers, late, {"completed", "failed"}, timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "ERR_5001", done
            cancels = [path for method, path in fake.calls if method == "PUT"]
            assert len(cancels) == 1
    finally:
        server.stop()
    refunds = rows(
        clean_database,
        "SELECT job_id::text FROM quota_log WHERE reason = 'refund' ORDER BY id",
    )
    assert [row[0] for row in refunds] == [lost, expired, garbage, late]
    assert credits_verify(clean_database).returncode == 0
