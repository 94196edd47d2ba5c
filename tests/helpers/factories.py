"""Factories for generation tests: catalog entries that misbehave on purpose, request bodies,
and waiting for a job to end."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from rendio.catalog.importer import import_models, parse_catalog
from rendio.catalog.schemas import model_id_for
from rendio.platform.db import sync_engine

LOCAL_ID = str(model_id_for("rendio-local"))

# Settings that make a worker quick to react in tests (SPEC defaults are seconds, not tenths).
FAST_WORKER: dict[str, Any] = {
    "poll_initial": 0.1,
    "poll_max": 0.3,
    "provider_retry_initial": 0.05,
    "provider_retry_max": 0.1,
    "worker_stalled_after": 3,
    "job_stale_after": 3,
    "sweep_every": 1,
}


def simulated_model(slug: str, *, cost: int = 2, deadline: int = 600, **options: Any) -> str:
    """A `local` model whose renderer misbehaves as `options` say (see providers/local.py)."""
    settings = (
        "{durations: [1, 2], default_duration: 1, aspect_ratios: ['16:9'], "
        "default_aspect_ratio: '16:9', resolutions: [360p], default_resolution: 360p}"
    )
    options_yaml = "{" + ", ".join(f"{k}: {v}" for k, v in options.items()) + "}"
    return (
        f"  - {{slug: {slug}, name: {slug}, category: test, provider: local, "
        f"provider_model_id: local-v1, cost_per_generation: {cost}, deadline_seconds: {deadline}, "
        f"settings: {settings}, options: {options_yaml}}}\n"
    )


def add_models(database_url: str, *entries: str) -> list[str]:
    engine = sync_engine(database_url)
    with engine.begin() as conn:
        parsed = parse_catalog("models:\n" + "".join(entries))
        import_models(conn, parsed)
    engine.dispose()
    return [str(model_id_for(entry.slug)) for entry in parsed]


def video_body(
    model_id: str = LOCAL_ID, prompt: str = "a paper boat on a river", **settings: Any
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "prompt": prompt,
        "settings": {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p", **settings},
    }


async def generate(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
    key: str | None = None,
) -> httpx.Response:
    return await client.post(
        "/functions/v1/generate-video",
        json=body if body is not None else video_body(),
        headers={**headers, "Idempotency-Key": key or str(uuid.uuid4())},
    )


async def wait_for_end(
    client: httpx.AsyncClient, headers: dict[str, str], job_id: str, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = (
            await client.get(
                "/functions/v1/get-video-status", params={"job_id": job_id}, headers=headers
            )
        ).json()
        if status["status"] in ("completed", "failed"):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout}s: {status}")
