"""The provider webhook endpoints: verified before anything else, recorded once, turned into
one look-now per job. Forged, stale, unsigned and replayed deliveries change nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.catalog.schemas import model_id_for
from rendio.webhooks import signatures
from tests.fakes.fal import FakeFal, served_fal
from tests.fakes.openai_videos import WEBHOOK_SECRET, sign_webhook, webhook_event
from tests.helpers.clients import guest, open_client
from tests.helpers.settings import SettingsFactory

KLING = str(model_id_for("fal-kling-2-1"))


@pytest.fixture(scope="module")
def fal_server() -> Iterator[FakeFal]:
    with served_fal() as fake:
        yield fake


@pytest.fixture
async def client(
    make_settings: SettingsFactory, fal_server: FakeFal
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        **fal_server.settings(), openai_api_key="sk-test", openai_webhook_secret=WEBHOOK_SECRET
    )
    app = create_app(settings, settings.database_url or "")
    async for http in open_client(app):
        yield http


async def running_job(
    client: httpx.AsyncClient, db: AsyncSession, provider: str, provider_job_id: str
) -> str:
    """A processing job of `provider`, known to it as `provider_job_id` (straight into the
    table: these tests are about the webhook, not the charge)."""
    user = await guest(client, f"device-{uuid.uuid4()}")
    job_id = (
        await db.execute(
            text(
                "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, "
                "provider_job_id, credits_used, deadline_at, status) VALUES (:u, :m, 'x', "
                "'{}'::jsonb, :p, :pid, 0, now() + interval '1 hour', 'processing') "
                "RETURNING job_id"
            ),
            {"u": user.user_id, "m": KLING, "p": provider, "pid": provider_job_id},
        )
    ).scalar_one()
    await db.commit()
    return str(job_id)


async def looks_queued(db: AsyncSession) -> list[dict[str, Any]]:
    rows = await db.execute(
        text(
            "SELECT args, priority FROM procrastinate_jobs "
            "WHERE task_name = 'generation:advance_job' AND status = 'todo'"
        )
    )
    found = [{"args": row.args, "priority": row.priority} for row in rows]
    await db.commit()
    return found


async def deliveries(db: AsyncSession) -> list[tuple[str, str]]:
    rows = await db.execute(text("SELECT source, delivery_id FROM webhook_deliveries"))
    found = [(row.source, row.delivery_id) for row in rows]
    await db.commit()
    return found


def fal_body(request_id: str) -> bytes:
    return json.dumps({"request_id": request_id, "status": "OK", "payload": {}}).encode()


async def test_a_signed_fal_webhook_queues_one_look_and_a_redelivery_nothing(
    client: httpx.AsyncClient, db: AsyncSession, fal_server: FakeFal
) -> None:
    job_id = await running_job(client, db, "fal", "req-1")
    body = fal_body("req-1")
    first = await client.post(
        "/webhooks/fal", content=body, headers=fal_server.signed(body, "req-1")
    )
    assert (first.status_code, first.json()) == (200, {"outcome": "queued"})
    assert await looks_queued(db) == [{"args": {"job_id": job_id, "look_now": True}, "priority": 1}]
    again = await client.post(
        "/webhooks/fal", content=body, headers=fal_server.signed(body, "req-1")
    )
    assert again.json() == {"outcome": "duplicate"}
    assert await deliveries(db) == [("fal", "req-1")]
    assert len(await looks_queued(db)) == 1


@pytest.mark.parametrize(
    "tamper",
    ["foreign key", "stale", "future", "body changed", "not hex", "no signature", "no user"],
)
async def test_forged_or_stale_fal_deliveries_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession, fal_server: FakeFal, tamper: str
) -> None:
    await running_job(client, db, "fal", "req-2")
    body = fal_body("req-2")
    headers = fal_server.signed(body, "req-2")
    if tamper == "foreign key":
        headers = fal_server.signed(body, "req-2", key=Ed25519PrivateKey.generate())
    elif tamper == "stale":
        headers = fal_server.signed(body, "req-2", at=int(time.time()) - 301)
    elif tamper == "future":
        headers = fal_server.signed(body, "req-2", at=int(time.time()) + 301)
    elif tamper == "body changed":
        body = fal_body("req-3")
    elif tamper == "not hex":
        headers["X-Fal-Webhook-Signature"] = "zz"
    elif tamper == "no signature":
        del headers["X-Fal-Webhook-Signature"]
    else:
        del headers["X-Fal-Webhook-User-Id"]
    refused = await client.post("/webhooks/fal", content=body, headers=headers)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "ERR_4005"
    assert await deliveries(db) == []
    assert await looks_queued(db) == []


async def test_a_rotated_fal_key_is_fetched_again(
    client: httpx.AsyncClient, db: AsyncSession, fal_server: FakeFal, monkeypatch: Any
) -> None:
    await running_job(client, db, "fal", "req-4")
    body = fal_body("req-4")
    warm = await client.post(
        "/webhooks/fal", content=body, headers=fal_server.signed(body, "req-4")
    )
    assert warm.status_code == 200  # the keys are now cached
    old_key, fal_server.signing_key = fal_server.signing_key, Ed25519PrivateKey.generate()
    monkeypatch.setattr(signatures, "_REFETCH_AT_MOST_EVERY", 0.0)
    try:
        body = fal_body("req-5")
        rotated = await client.post(
            "/webhooks/fal", content=body, headers=fal_server.signed(body, "req-5")
        )
        assert rotated.status_code == 200, rotated.text
    finally:
        fal_server.signing_key = old_key


async def test_a_webhook_for_a_job_we_do_not_follow_is_acknowledged(
    client: httpx.AsyncClient, db: AsyncSession, fal_server: FakeFal
) -> None:
    body = fal_body("someone-elses")
    answer = await client.post(
        "/webhooks/fal", content=body, headers=fal_server.signed(body, "someone-elses")
    )
    assert answer.json() == {"outcome": "unknown_job"}
    assert await looks_queued(db) == []


async def test_openai_events_are_verified_with_standard_webhooks(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    job_id = await running_job(client, db, "openai", "video_123")
    body, headers = sign_webhook(webhook_event("video_123"), msg_id="msg-1")
    first = await client.post("/webhooks/openai", content=body, headers=headers)
    assert first.json() == {"outcome": "queued"}, first.text
    # A second event for the same job while its look is still waiting: recorded, one look.
    body2, headers2 = sign_webhook(webhook_event("video_123"), msg_id="msg-2")
    assert (await client.post("/webhooks/openai", content=body2, headers=headers2)).json() == {
        "outcome": "queued"
    }
    assert [look["args"]["job_id"] for look in await looks_queued(db)] == [job_id]
    replay = await client.post("/webhooks/openai", content=body, headers=headers)
    assert replay.json() == {"outcome": "duplicate"}

    stale_body, stale = sign_webhook(
        webhook_event("video_123"), at=datetime.now(UTC) - timedelta(minutes=6)
    )
    assert (
        await client.post("/webhooks/openai", content=stale_body, headers=stale)
    ).status_code == 401
    forged_body, forged = sign_webhook(webhook_event("video_123"), secret="whsec_" + "Zm9yZ2Vk")
    assert (
        await client.post("/webhooks/openai", content=forged_body, headers=forged)
    ).status_code == 401
    assert sorted(d for _, d in await deliveries(db)) == ["msg-1", "msg-2"]


async def test_an_unconfigured_provider_s_webhook_is_refused(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    body, headers = sign_webhook(webhook_event("p1"), msg_id="r-1")
    refused = await client.post("/webhooks/replicate", content=body, headers=headers)
    assert refused.status_code == 401
    assert await deliveries(db) == []


@pytest.mark.parametrize(
    "hostile",
    ["superscript timestamp", "huge timestamp", "signature without comma", "not utf-8"],
)
async def test_hostile_deliveries_are_refused_not_crashed_on(
    client: httpx.AsyncClient, db: AsyncSession, fal_server: FakeFal, hostile: str
) -> None:
    if hostile in ("superscript timestamp", "huge timestamp"):
        body = fal_body("req-9")
        headers = fal_server.signed(body, "req-9")
        sent: dict[str, Any] = dict(headers)
        # A raw 0xB2 byte reads as "²", which str.isdigit() takes for a digit.
        sent["X-Fal-Webhook-Timestamp"] = b"\xb2" if hostile.startswith("super") else "9" * 5000
        answer = await client.post("/webhooks/fal", content=body, headers=sent)
    else:
        body, headers = sign_webhook(webhook_event("video_9"))
        if hostile == "signature without comma":
            headers["webhook-signature"] = "v1nocomma"
        else:
            body = b'{"data": "\xff\xfe"}'
        answer = await client.post("/webhooks/openai", content=body, headers=headers)
    assert answer.status_code in (401, 431), answer.text
    assert await deliveries(db) == []


def test_a_payload_is_made_storable() -> None:
    from rendio.platform.deliveries import storable

    assert storable({"a\x00": ["x\x00y", float("nan"), 1.5, {"k": float("inf")}]}) == {
        "a": ["xy", None, 1.5, {"k": None}]
    }
