"""Fixtures for identity tests: the fake Apple server and apps configured against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from rendio.app import create_app
from rendio.config import Settings
from tests.conftest import free_port, open_client
from tests.fakes.apple import DEVICECHECK_KEY_ID, TEAM_ID, FakeApple, ServedApp

CLIENT_ID = "com.rendio.app"


@pytest.fixture(scope="session")
def apple_server() -> Iterator[FakeApple]:
    fake = FakeApple()
    with ServedApp(fake.app(), free_port()) as served:
        fake.url = served.url
        yield fake


@pytest.fixture
def fake_apple(apple_server: FakeApple) -> FakeApple:
    apple_server.reset()
    return apple_server


def apple_settings(fake: FakeApple, **overrides: Any) -> dict[str, Any]:
    """Settings that send Sign in with Apple and DeviceCheck to the fake."""
    values: dict[str, Any] = {
        "apple_client_ids": [CLIENT_ID],
        "apple_jwks_url": f"{fake.url}/auth/keys",
        "apple_team_id": TEAM_ID,
        "devicecheck_key_id": DEVICECHECK_KEY_ID,
        "devicecheck_private_key": fake.devicecheck_private_pem(),
        "devicecheck_url": fake.url,
        "devicecheck_timeout": 0.5,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def apple_client(
    make_settings: Any, fake_apple: FakeApple
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the `trust` device verifier and Sign in with Apple against the fake."""
    settings: Settings = make_settings(**apple_settings(fake_apple))
    async for http in open_client(create_app(settings, settings.database_url or "")):
        yield http


async def device_check(
    client: httpx.AsyncClient, device_id: str, token: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/functions/v1/device-check",
        json={"device_id": device_id, "device_token": token},
        headers=headers,
    )


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}
