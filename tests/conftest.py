"""Test harness: one real, migrated PostgreSQL database for the session.

By default it is an embedded PostgreSQL in a temporary directory. With
RENDIO_TEST_DATABASE_URL set (CI does this for the system PostgreSQL), a fresh database is
created on that server instead and dropped at the end. Tests are isolated by truncating every
table after each test that touched the database, then re-seeding the default catalog.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from rendio.app import create_app
from rendio.catalog.importer import seed_defaults
from rendio.config import Settings
from rendio.ledger.audit import ledger_offences
from rendio.platform import embedded
from rendio.platform.db import create_engine, session_factory, sync_engine
from rendio.tables import metadata, prepare_database
from tests.helpers.clients import open_client
from tests.helpers.database import create_database, drop_database
from tests.helpers.factories import FAST_WORKER
from tests.helpers.processes import LiveServer, service_env, start_server
from tests.helpers.s3 import FakeS3, fake_s3
from tests.helpers.settings import GENEROUS_LIMITS, SettingsFactory

EXTERNAL_URL_VARIABLE = "RENDIO_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL to a PostgreSQL server we may create databases on."""
    external = os.environ.get(EXTERNAL_URL_VARIABLE)
    if external:
        return external
    return embedded.start(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    name = f"rendio_test_{os.getpid()}"
    url = create_database(server_url, name)
    prepare_database(url)
    yield url
    drop_database(server_url, name)


_APP_TABLES = ", ".join(table.name for table in metadata.sorted_tables)
_QUEUE_TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers"


def reset_database(url: str) -> None:
    """Check the ledger invariant (every test must leave it intact), then empty the tables."""
    engine = sync_engine(url)
    with engine.begin() as conn:
        offences = ledger_offences(conn)
        conn.execute(text(f"TRUNCATE {_APP_TABLES}, {_QUEUE_TABLES} RESTART IDENTITY CASCADE"))
        seed_defaults(conn)
    engine.dispose()
    assert not offences, f"the test broke the ledger invariant: {offences}"


@pytest.fixture
def clean_database(database_url: str) -> Iterator[str]:
    """The database URL; every row the test wrote is gone afterwards."""
    yield database_url
    reset_database(database_url)


@pytest.fixture
def make_settings(tmp_path: Path, clean_database: str) -> SettingsFactory:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": clean_database, "data_dir": tmp_path / "data"}
        values.update(GENEROUS_LIMITS)
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine, clean_database: str) -> AsyncIterator[AsyncSession]:
    """A session on the test database; rolled back at the end (and the tables truncated)."""
    async with session_factory(engine)() as session:
        yield session
        await session.rollback()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for the real app on the test database (no worker)."""
    app = create_app(settings, settings.database_url or "")
    async for http in open_client(app):
        yield http


@pytest.fixture
def live_server(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The real `rendio serve` process on the test database."""
    env = service_env(RENDIO_DATABASE_URL=clean_database, RENDIO_DATA_DIR=str(tmp_path / "data"))
    server = start_server(["--no-worker"], env, tmp_path / f"server-{uuid.uuid4().hex}.log")
    yield server
    server.stop()


@pytest.fixture
async def worker_client(make_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its in-process worker, tuned to react quickly."""
    settings = make_settings(**FAST_WORKER)
    app = create_app(settings, settings.database_url or "", run_worker=True)
    async for http in open_client(app):
        yield http


@pytest.fixture(scope="session")
def s3() -> Iterator[FakeS3]:
    """A real S3-speaking server (moto's), shared by the session; each test makes a bucket."""
    with fake_s3() as server:
        yield server
