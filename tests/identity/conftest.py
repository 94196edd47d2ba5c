"""Fixtures for identity tests: the fake Apple server and apps configured against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from rendio.app import create_app
from rendio.config import Settings
from tests.fakes.apple import FakeApple, ServedApp
from tests.helpers.apple import apple_settings
from tests.helpers.clients import open_client
from tests.helpers.processes import free_port


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


@pytest.fixture
async def apple_client(
    make_settings: Any, fake_apple: FakeApple
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the `trust` device verifier and Sign in with Apple against the fake."""
    settings: Settings = make_settings(**apple_settings(fake_apple))
    async for http in open_client(create_app(settings, settings.database_url or "")):
        yield http
