"""Talking to live `rendio serve` processes over real HTTP (synchronous httpx)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx


def onboard(http: httpx.Client, device: str = "install-1") -> dict[str, str]:
    """The bearer headers of the guest of `device`."""
    body = http.post(
        "/functions/v1/device-check", json={"device_id": device, "device_token": f"phone-{device}"}
    ).json()
    return {"Authorization": f"Bearer {body['session']['access_token']}"}


def start_job(http: httpx.Client, headers: dict[str, str], model_id: str, duration: int) -> str:
    response = http.post(
        "/functions/v1/generate-video",
        json={
            "model_id": model_id,
            "prompt": "a kite over the dunes",
            "settings": {"duration": duration, "aspect_ratio": "16:9", "resolution": "360p"},
        },
        headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["job_id"])


def status_of(http: httpx.Client, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    status: dict[str, Any] = http.get(
        "/functions/v1/get-video-status", params={"job_id": job_id}, headers=headers
    ).json()
    return status


def wait_until(
    http: httpx.Client, headers: dict[str, str], job_id: str, states: set[str], timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = status_of(http, headers, job_id)
        if status["status"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never reached {states}: {status}")
