"""Push end to end: `rendio serve` with its worker sends one APNs alert over HTTP/2 per device
when a video is ready."""

import time
import uuid
from pathlib import Path

import httpx

from tests.fakes.apns import FakeApns, ServedOverHttp2
from tests.helpers.factories import FAST_WORKER, video_body
from tests.helpers.processes import service_env, start_server


def test_rendio_serve_pushes_when_a_video_is_ready(clean_database: str, tmp_path: Path) -> None:
    with ServedOverHttp2(FakeApns()) as apns:
        settings = {
            f"RENDIO_{k.upper()}": str(v) for k, v in (FAST_WORKER | apns.settings()).items()
        }
        env = service_env(
            RENDIO_DATABASE_URL=clean_database, RENDIO_DATA_DIR=str(tmp_path / "data"), **settings
        )
        server = start_server([], env, tmp_path / f"serve-{uuid.uuid4().hex}.log")
        try:
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                onboarded = http.post(
                    "/functions/v1/device-check",
                    json={"device_id": "push-e2e", "device_token": "push-phone"},
                ).json()
                headers = {"Authorization": f"Bearer {onboarded['session']['access_token']}"}
                tokens = ["d" * 64, "e" * 64]
                for token in tokens:
                    registered = http.post(
                        "/functions/v1/register-push-token", json={"token": token}, headers=headers
                    )
                    assert registered.status_code == 200
                job_id = http.post(
                    "/functions/v1/generate-video",
                    json=video_body(),
                    headers={**headers, "Idempotency-Key": "push-e2e-1"},
                ).json()["job_id"]
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and len(apns.pushes) < len(tokens):
                    time.sleep(0.2)
                time.sleep(1)  # room for a duplicate to show up, if there were one
        finally:
            server.stop()
    assert sorted(push.token for push in apns.pushes) == tokens
    for push in apns.pushes:
        assert push.problems == []
        assert push.http_version == "2"
        assert push.payload["job_id"] == job_id
        assert push.payload["status"] == "completed"
