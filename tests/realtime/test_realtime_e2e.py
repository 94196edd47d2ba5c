"""supabase-py's realtime client against `rendio serve --no-worker` while a `rendio worker` in
another process makes the video: the caller hears its job's INSERT and UPDATEs through
`completed`; another user, and a filter naming the caller's id from another user's socket,
hear nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from tests.helpers.processes import LiveServer, fast_env, start_server, start_worker
from tests.helpers.waiting import eventually

ANON_KEY = "rendio-anon-key-for-realtime-tests"
VIDEO = {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"}


@pytest.fixture
def stack(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    env = fast_env(clean_database, tmp_path / "data", RENDIO_ANON_KEY=ANON_KEY)
    server = start_server(["--no-worker"], env, tmp_path / "server.log")
    worker = start_worker(env, tmp_path / "worker.log")
    yield server
    worker.terminate()
    worker.wait(20)
    server.stop()


async def guest(http: httpx.AsyncClient, device: str) -> dict[str, Any]:
    answer = await http.post(
        "/functions/v1/device-check",
        json={"device_id": device, "device_token": f"phone-{device}"},
        headers={"apikey": ANON_KEY},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def listen(
    server: LiveServer, token: str, table: str, filter: str | None = None
) -> tuple[AsyncRealtimeClient, list[dict[str, Any]]]:
    """A connected client whose channel on `table` is subscribed; the list fills with events."""
    client = AsyncRealtimeClient(f"{server.base_url}/realtime/v1", ANON_KEY, auto_reconnect=False)
    await client.connect()
    await client.set_auth(token)
    heard: list[dict[str, Any]] = []
    states: list[RealtimeSubscribeStates] = []
    channel = client.channel(f"room-{uuid.uuid4().hex[:8]}")
    channel.on_postgres_changes(
        "*", table=table, schema="public", filter=filter, callback=heard.append
    )
    await channel.subscribe(lambda state, error: states.append(state))
    assert states == [RealtimeSubscribeStates.SUBSCRIBED], states
    return client, heard


async def test_a_video_is_followed_live_and_only_by_its_owner(stack: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        alice = await guest(http, "alice")
        bob = await guest(http, "bob")
        alice_token = alice["session"]["access_token"]
        own, heard = await listen(stack, alice_token, "video_jobs")
        _, credits = await listen(stack, alice_token, "users", f"id=eq.{alice['user_id']}")
        other, overheard = await listen(stack, bob["session"]["access_token"], "video_jobs")
        spy, spied = await listen(
            stack, bob["session"]["access_token"], "video_jobs", f"user_id=eq.{alice['user_id']}"
        )

        models = await http.get(
            "/rest/v1/models?select=id&provider=eq.local",
            headers={"apikey": ANON_KEY, "Authorization": f"Bearer {ANON_KEY}"},
        )
        made = await http.post(
            "/functions/v1/generate-video",
            json={"model_id": models.json()[0]["id"], "prompt": "a paper boat", "settings": VIDEO},
            headers={
                "apikey": ANON_KEY,
                "Authorization": f"Bearer {alice_token}",
                "Idempotency-Key": str(uuid.uuid4()),
            },
        )
        assert made.status_code == 200, made.text
        job_id = made.json()["job_id"]

        def statuses() -> list[str]:
            return [event["data"]["record"]["status"] for event in heard]

        assert await eventually(lambda: "completed" in statuses(), 60), "timed out"
        first = heard[0]["data"]
        assert first["type"] == "INSERT" and first["record"]["job_id"] == job_id
        assert {"name": "status", "type": "varchar"} in first["columns"]
        assert all(event["data"]["type"] == "UPDATE" for event in heard[1:])
        assert all(event["data"]["old_record"] == {"job_id": job_id} for event in heard[1:])
        assert "processing" in statuses()
        done = heard[-1]["data"]["record"]
        assert done["video_url"].startswith(stack.base_url) and done["progress"] == 100
        assert "error_message" not in done and "provider_state" not in done
        rows = await http.get(
            f"/rest/v1/video_jobs?job_id=eq.{job_id}",
            headers={"apikey": ANON_KEY, "Authorization": f"Bearer {alice_token}"},
        )
        assert rows.json()[0]["status"] == done["status"] == "completed"

        assert await eventually(lambda: bool(credits), 60), "timed out"
        assert credits[-1]["data"]["record"]["credits_remaining"] < 10
        await asyncio.sleep(1)  # anything meant for the others would have arrived by now
        assert overheard == [] and spied == []
        for client in (own, other, spy):
            await client.close()
