"""Push: devices register tokens; when a job ends each gets one APNs alert over HTTP/2, in the
user's language; dead tokens are dropped, busy answers retried, and nothing of it touches the
job."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.accounts.service import merge_guest
from rendio.app import create_app
from tests.fakes.apns import FakeApns, ServedOverHttp2
from tests.helpers.clients import guest, open_client
from tests.helpers.factories import FAST_WORKER, add_models, generate, simulated_model, video_body
from tests.helpers.settings import SettingsFactory

OK, DEAD, BUSY = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(scope="module")
def apns_server() -> Iterator[FakeApns]:
    with ServedOverHttp2(FakeApns()) as fake:
        yield fake


@pytest.fixture
def apns(apns_server: FakeApns) -> FakeApns:
    apns_server.pushes.clear()
    apns_server.script.clear()
    return apns_server


@pytest.fixture
async def pushing_client(
    make_settings: SettingsFactory, apns: FakeApns
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(**FAST_WORKER, **apns.settings())
    async for client in open_client(
        create_app(settings, settings.database_url or "", run_worker=True)
    ):
        yield client


async def register(client: httpx.AsyncClient, headers: dict[str, str], token: str) -> None:
    answer = await client.post(
        "/functions/v1/register-push-token",
        json={"token": token, "environment": "sandbox"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text


async def deliveries(db: AsyncSession) -> dict[str, tuple[str, int]]:
    """Token → (status, attempts); a dropped token shows as None."""
    rows = await db.execute(
        text(
            "SELECT t.token, d.status, d.attempts, d.reason FROM push_deliveries d "
            "LEFT JOIN push_tokens t ON t.id = d.token_id"
        )
    )
    await db.rollback()
    return {str(row.token or row.reason): (row.status, row.attempts) for row in rows}


async def settled(db: AsyncSession, count: int) -> dict[str, tuple[str, int]]:
    for _ in range(200):
        found = await deliveries(db)
        if len(found) == count and all(status != "pending" for status, _ in found.values()):
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"deliveries did not settle: {await deliveries(db)}")


async def test_a_finished_job_pushes_once_per_device_over_http2(
    pushing_client: httpx.AsyncClient, apns: FakeApns, db: AsyncSession
) -> None:
    client = pushing_client
    user = await guest(client)
    for token in (OK, DEAD, BUSY):
        await register(client, user.headers, token)
    apns.script[DEAD] = [410]
    apns.script[BUSY] = [503, 200]
    job_id = (await generate(client, user.headers)).json()["job_id"]
    found = await settled(db, 3)
    assert found[OK] == ("sent", 1)
    assert found[BUSY] == ("sent", 2)  # 503, then retried once
    assert found["Unregistered"] == ("failed", 1)  # its token is gone
    tokens = await db.execute(text("SELECT token FROM push_tokens ORDER BY token"))
    assert list(tokens.scalars()) == [OK, BUSY]
    assert len(apns.to(OK)) == 1 and len(apns.to(DEAD)) == 1 and len(apns.to(BUSY)) == 2
    push = apns.to(OK)[0]
    assert push.problems == []
    assert push.http_version == "2"
    assert push.payload["job_id"] == job_id
    assert push.payload["status"] == "completed"
    assert push.payload["aps"]["alert"]["body"] == "Your video is ready."
    status = await client.get(
        "/functions/v1/get-video-status", params={"job_id": job_id}, headers=user.headers
    )
    assert status.json()["status"] == "completed"


async def test_a_failed_job_says_so_in_the_users_language(
    pushing_client: httpx.AsyncClient, apns: FakeApns, db: AsyncSession, clean_database: str
) -> None:
    client = pushing_client
    [failing] = add_models(clean_database, simulated_model("push-fail", cost=2, simulate="fail"))
    user = await guest(client)
    await client.patch("/functions/v1/user-profile", json={"language": "tr"}, headers=user.headers)
    await register(client, user.headers, OK)
    job_id = (await generate(client, user.headers, video_body(failing, duration=1))).json()[
        "job_id"
    ]
    assert (await settled(db, 1))[OK] == ("sent", 1)
    payload = apns.to(OK)[0].payload
    assert payload["job_id"] == job_id and payload["status"] == "failed"
    assert payload["aps"]["alert"]["body"] == ("Videonuz oluşturulamadı. 2 krediniz iade edildi.")


async def test_tokens_register_unregister_and_refuse_garbage(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    alice = await guest(client, "install-a")
    bob = await guest(client, "install-b")
    await register(client, alice.headers, OK)
    await register(client, alice.headers, OK)  # again: harmless
    await register(client, bob.headers, OK.upper())  # the device now belongs to bob
    owner = await db.execute(text("SELECT user_id::text FROM push_tokens"))
    assert list(owner.scalars()) == [bob.user_id]
    for body in ({"token": "xyz"}, {"token": OK, "environment": "staging"}, {}):
        refused = await client.post(
            "/functions/v1/register-push-token", json=body, headers=alice.headers
        )
        assert refused.status_code == 422, body
    gone = await client.post(
        "/functions/v1/unregister-push-token", json={"token": OK}, headers=bob.headers
    )
    assert gone.json() == {"token": OK, "registered": False}
    count = await db.execute(text("SELECT count(*) FROM push_tokens"))
    assert count.scalar_one() == 0
    anonymous = await client.post("/functions/v1/register-push-token", json={"token": OK})
    assert anonymous.status_code == 401


async def test_tokens_follow_a_merge_and_leave_with_the_account(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    guest_user = await guest(client, "install-guest")
    account = await guest(client, "install-account")
    await register(client, guest_user.headers, OK)
    await merge_guest(db, uuid.UUID(guest_user.user_id), uuid.UUID(account.user_id))
    await db.commit()
    owner = await db.execute(text("SELECT user_id::text FROM push_tokens"))
    assert list(owner.scalars()) == [account.user_id]
    deleted = await client.post("/functions/v1/delete-account", headers=account.headers)
    assert deleted.status_code == 200
    assert (await db.execute(text("SELECT count(*) FROM push_tokens"))).scalar_one() == 0


def test_push_needs_every_apns_setting(make_settings: SettingsFactory) -> None:
    from rendio.config import SettingsError, load_settings

    with pytest.raises(SettingsError, match="RENDIO_APNS_TOPIC"):
        load_settings(apns_key_id="K", apns_team_id="T", apns_private_key="pem")
