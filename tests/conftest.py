"""Test harness: one real, migrated PostgreSQL database for the session.

By default it is an embedded PostgreSQL in a temporary directory. With
RENDIO_TEST_DATABASE_URL set (CI does this for the system PostgreSQL), a fresh database is
created on that server instead and dropped at the end. Tests are isolated by truncating every
table after each test that touched the database, then re-seeding the default catalog.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from rendio.app import create_app
from rendio.catalog.importer import seed_defaults
from rendio.config import Settings
from rendio.credits.audit import ledger_offences
from rendio.platform import embedded
from rendio.platform.db import create_engine, libpq_url, session_factory, sync_engine
from rendio.platform.migrate import prepare_database
from rendio.tables import metadata

EXTERNAL_URL_VARIABLE = "RENDIO_TEST_DATABASE_URL"


def create_database(server_url: str, name: str) -> str:
    """Create (or recreate) database `name` on the server of `server_url`; return its URL."""
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


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
def make_settings(tmp_path: Path, clean_database: str):  # type: ignore[no-untyped-def]
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"database_url": clean_database, "data_dir": tmp_path / "data"}
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings) -> Settings:  # type: ignore[no-untyped-def]
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


async def open_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client for the real app on the test database (no worker)."""
    app = create_app(settings, settings.database_url or "")
    async for http in open_client(app):
        yield http


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rendio_command() -> list[str]:
    return [sys.executable, "-m", "rendio"]


def service_env(**variables: str) -> dict[str, str]:
    """The environment for a child `rendio` process: ours minus RENDIO_* settings, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENDIO_")}
    env.update(variables)
    return env


def credits_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    """`rendio credits verify` on a database, as an operator would run it."""
    return subprocess.run(
        [*rendio_command(), "credits", "verify"],
        env=service_env(RENDIO_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Poll `url` until it answers 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class LiveServer:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_server(args: list[str], env: dict[str, str], log: Path) -> LiveServer:
    port = free_port()
    handle = log.open("wb")
    process = subprocess.Popen(
        [*rendio_command(), "serve", "--port", str(port), *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base_url}/health", process)
    return LiveServer(process, base_url, log)


@pytest.fixture
def live_server(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    """The real `rendio serve` process on the test database."""
    env = service_env(RENDIO_DATABASE_URL=clean_database, RENDIO_DATA_DIR=str(tmp_path / "data"))
    server = start_server(["--no-worker"], env, tmp_path / f"server-{uuid.uuid4().hex}.log")
    yield server
    server.stop()
