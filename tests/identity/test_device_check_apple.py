"""device-check with the `apple` verifier against a fake DeviceCheck service over real HTTP."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from tests.fakes.apple import DEVICECHECK_KEY_ID, TEAM_ID, FakeApple
from tests.helpers.apple import apple_settings
from tests.helpers.clients import device_check, open_client


@pytest.fixture
async def client(make_settings: Any, fake_apple: FakeApple) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(**apple_settings(fake_apple, device_verifier="apple"))
    async for http in open_client(create_app(settings, settings.database_url)):
        yield http


async def totals(db: AsyncSession) -> tuple[int, int]:
    row = await db.execute(
        text("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM quota_log)")
    )
    users, ledger_rows = row.one()
    return users, ledger_rows


async def test_first_check_grants_and_sets_bit0_at_apple(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    response = await device_check(client, "install-1", "phone-A.token-1")
    assert response.status_code == 200, response.text
    assert response.json()["credits_remaining"] == 10
    assert fake_apple.bits["phone-A"]["bit0"] is True
    paths = [path for path, _ in fake_apple.requests]
    # A first grant reads the bits again under the grant lock before setting bit0.
    assert paths == ["/v1/query_two_bits", "/v1/query_two_bits", "/v1/update_two_bits"]
    query = fake_apple.requests[0][1]
    assert query["device_token"] == "phone-A.token-1"
    assert len(query["transaction_id"]) == 36
    assert query["timestamp"] > 1_700_000_000_000


async def test_the_authorization_jwt_is_what_apple_expects(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    await device_check(client, "install-1", "phone-A.token-1")
    token = fake_apple.authorizations[0].removeprefix("Bearer ")
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "kid": DEVICECHECK_KEY_ID,
        "typ": "JWT",
    }
    claims = jwt.decode(token, fake_apple.devicecheck_key.public_key(), algorithms=["ES256"])
    assert claims["iss"] == TEAM_ID
    assert isinstance(claims["iat"], int)


async def test_a_device_with_bit0_set_gets_no_credits(
    client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    fake_apple.bits["phone-A"] = {"bit0": True, "bit1": False, "last_update_time": "2026-01"}
    body = (await device_check(client, "install-9", "phone-A.fresh")).json()
    assert body["credits_remaining"] == 0
    assert body["initial_grant_claimed"] is True
    assert await totals(db) == (1, 0)
    assert [path for path, _ in fake_apple.requests] == ["/v1/query_two_bits"]


async def test_bit1_is_kept_when_bit0_is_set(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    fake_apple.bits["phone-A"] = {"bit0": False, "bit1": True, "last_update_time": "2026-01"}
    body = (await device_check(client, "install-1", "phone-A.t")).json()
    assert body["credits_remaining"] == 10
    assert fake_apple.bits["phone-A"]["bit0"] is True
    assert fake_apple.bits["phone-A"]["bit1"] is True


async def test_reinstall_is_recognised_through_apple(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    first = (await device_check(client, "install-1", "phone-A.t1")).json()
    second = (await device_check(client, "install-2", "phone-A.t2")).json()
    assert first["credits_remaining"] == 10
    assert second["user_id"] != first["user_id"]
    assert second["credits_remaining"] == 0


async def test_a_rejected_token_is_err_4006_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    response = await device_check(client, "install-1", "not-a-device-token")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "ERR_4006"
    assert error["details"]["reason"] == "Missing or incorrectly formatted device token payload"
    assert await totals(db) == (0, 0)


async def test_server_errors_and_timeouts_are_retried(
    client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    fake_apple.faults.extend([503, "timeout"])
    response = await device_check(client, "install-1", "phone-A.t1")
    assert response.status_code == 200, response.text
    assert response.json()["credits_remaining"] == 10


async def test_apple_down_means_no_user_and_no_grant(
    client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    fake_apple.faults.extend([500, 502, 500])
    response = await device_check(client, "install-1", "phone-A.t1")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "ERR_5002"
    assert await totals(db) == (0, 0)
    assert "phone-A" not in fake_apple.bits


async def test_failing_to_set_the_bit_rolls_the_grant_back(
    client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    """The grant is written, then bit0 is set; if Apple will not set it, nothing is kept."""
    fake_apple.update_faults.extend([500, 500, 500])
    response = await device_check(client, "install-1", "phone-A.t1")
    assert response.status_code == 502
    assert await totals(db) == (0, 0)
    retry = await device_check(client, "install-1", "phone-A.t2")
    assert retry.json()["credits_remaining"] == 10


async def test_our_credentials_refused_is_not_the_devices_fault(
    make_settings: Any, fake_apple: FakeApple, db: AsyncSession
) -> None:
    other_key = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    settings = make_settings(
        **apple_settings(fake_apple, device_verifier="apple", devicecheck_private_key=other_key)
    )
    async for client in open_client(create_app(settings, settings.database_url)):
        response = await device_check(client, "install-1", "phone-A.t1")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "ERR_5002"
    assert await totals(db) == (0, 0)


async def test_concurrent_installs_of_one_phone_share_one_grant(
    client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    responses = await asyncio.gather(
        *(device_check(client, f"install-{n}", f"phone-A.token-{n}") for n in range(8))
    )
    assert {r.status_code for r in responses} == {200}
    assert sorted(r.json()["credits_remaining"] for r in responses) == [0] * 7 + [10]
    assert await totals(db) == (8, 1)
