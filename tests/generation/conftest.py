"""Fixtures for generation: the app with a worker tuned to react quickly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rendio.app import create_app
from tests.helpers.clients import open_client
from tests.helpers.factories import FAST_WORKER


@pytest.fixture
async def worker_client(make_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its in-process worker, tuned to react quickly."""
    settings = make_settings(**FAST_WORKER)
    app = create_app(settings, settings.database_url or "", run_worker=True)
    async for http in open_client(app):
        yield http
