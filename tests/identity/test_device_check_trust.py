"""device-check with the dev `trust` verifier: guests, sessions, starter credits once per device."""

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from tests.helpers.clients import bearer, device_check, open_client


async def ledger_rows(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await db.execute(text("SELECT user_id, change, reason FROM quota_log ORDER BY id"))
    return [tuple(row) for row in rows]


async def test_new_device_gets_a_guest_with_starter_credits(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await device_check(client, "install-1", "phone-A")
    assert response.status_code == 200
    body = response.json()
    assert body["is_new"] is True
    assert body["is_guest"] is True
    assert body["credits_remaining"] == 10
    assert body["initial_grant_claimed"] is True
    session = body["session"]
    assert session["token_type"] == "bearer"
    assert session["expires_in"] == 3600
    assert session["user"]["id"] == body["user_id"]
    assert session["user"]["is_anonymous"] is True
    assert await ledger_rows(db) == [(uuid.UUID(body["user_id"]), 10, "initial_grant")]

    profile = await client.get("/functions/v1/user-profile", headers=bearer(session))
    assert profile.status_code == 200
    assert profile.json()["credits_remaining"] == 10


async def test_same_device_id_returns_the_same_user_with_a_fresh_session(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = (await device_check(client, "install-1", "phone-A")).json()
    second = (await device_check(client, "install-1", "phone-A")).json()
    assert second["user_id"] == first["user_id"]
    assert second["is_new"] is False
    assert second["credits_remaining"] == 10
    assert second["session"]["refresh_token"] != first["session"]["refresh_token"]
    assert len(await ledger_rows(db)) == 1
    sessions = await db.execute(text("SELECT count(*) FROM auth_sessions"))
    assert sessions.scalar_one() == 2


async def test_reinstall_gets_a_new_guest_without_credits(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    first = (await device_check(client, "install-1", "phone-A")).json()
    again = (await device_check(client, "install-2", "phone-A")).json()
    assert again["user_id"] != first["user_id"]
    assert again["is_new"] is True
    assert again["credits_remaining"] == 0
    assert again["initial_grant_claimed"] is True
    other_phone = (await device_check(client, "install-3", "phone-B")).json()
    assert other_phone["credits_remaining"] == 10
    assert [row[1] for row in await ledger_rows(db)] == [10, 10]


async def test_the_old_path_is_an_alias(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/functions/v1/device/check", json={"device_id": "install-1", "device_token": "phone-A"}
    )
    assert response.status_code == 200
    assert response.json()["credits_remaining"] == 10


async def test_starter_credits_are_configurable(make_settings: Any) -> None:
    settings = make_settings(starter_credits=3)
    async for client in open_client(create_app(settings, settings.database_url)):
        body = (await device_check(client, "install-1", "phone-A")).json()
        assert body["credits_remaining"] == 3
        assert body["initial_grant_claimed"] is True


async def test_concurrent_checks_of_one_device_make_one_user_and_one_grant(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    responses = await asyncio.gather(
        *(device_check(client, "install-1", "phone-A") for _ in range(20))
    )
    assert {r.status_code for r in responses} == {200}
    bodies = [r.json() for r in responses]
    assert len({b["user_id"] for b in bodies}) == 1
    assert sum(b["is_new"] for b in bodies) == 1
    assert {b["credits_remaining"] for b in bodies} == {10}
    assert len(await ledger_rows(db)) == 1
    users = await db.execute(text("SELECT count(*) FROM users"))
    assert users.scalar_one() == 1


async def test_concurrent_installs_on_one_device_share_one_grant(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    responses = await asyncio.gather(
        *(device_check(client, f"install-{n}", "phone-A") for n in range(10))
    )
    assert {r.status_code for r in responses} == {200}
    credits = sorted(r.json()["credits_remaining"] for r in responses)
    assert credits == [0] * 9 + [10]
    assert len(await ledger_rows(db)) == 1


async def test_bad_bodies_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    bad_bodies: list[Any] = [
        {},
        {"device_id": "install-1"},
        {"device_token": "phone-A"},
        {"device_id": "", "device_token": "phone-A"},
        {"device_id": "x" * 256, "device_token": "phone-A"},
        {"device_id": "has space", "device_token": "phone-A"},
        {"device_id": 12, "device_token": "phone-A"},
        {"device_id": "install-1", "device_token": ""},
        {"device_id": "install-1", "device_token": ["phone-A"]},
        [],
        "text",
    ]
    for body in bad_bodies:
        response = await client.post("/functions/v1/device-check", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "ERR_4013"
    raw = await client.post(
        "/functions/v1/device-check",
        content=b'{"device_id": ',
        headers={"Content-Type": "application/json"},
    )
    assert raw.status_code == 422
    counts = await db.execute(
        text("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM device_bits)")
    )
    assert tuple(counts.one()) == (0, 0)


async def test_a_banned_guest_is_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    first = (await device_check(client, "install-1", "phone-A")).json()
    await db.execute(
        text("UPDATE users SET banned_at = now() WHERE id = :id"), {"id": first["user_id"]}
    )
    await db.commit()
    response = await device_check(client, "install-1", "phone-A")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "ERR_4010"
    sessions = await db.execute(text("SELECT count(*) FROM auth_sessions"))
    assert sessions.scalar_one() == 1


async def test_device_check_racing_delete_account_answers_cleanly(
    client: httpx.AsyncClient, engine: Any, db: AsyncSession
) -> None:
    """The guest of a device is deleted between device-check finding the device taken and
    locking its row: the device gets a fresh guest, not a 500."""
    first = await device_check(client, "install-race", "phone-race")
    user_id = first.json()["user_id"]
    async with engine.connect() as deleter:
        transaction = await deleter.begin()
        await deleter.execute(
            text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": user_id}
        )
        racing = asyncio.create_task(device_check(client, "install-race", "phone-race"))
        for _ in range(100):  # until device-check waits on the row lock
            waiting = await db.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'"
                )
            )
            await db.rollback()
            if waiting.scalar_one() >= 1:
                break
            await asyncio.sleep(0.05)
        await deleter.execute(text("DELETE FROM users WHERE id = :id"), {"id": user_id})
        await transaction.commit()
    response = await racing
    assert response.status_code == 200, response.text
    assert response.json()["user_id"] != user_id
    assert response.json()["is_new"] is True
    assert response.json()["credits_remaining"] == 0  # the device had its starter credits
