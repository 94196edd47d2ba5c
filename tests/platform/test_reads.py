"""The lean reads' connections (platform/reads.py): bounded, reused, never handed on mid-query."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rendio.platform import reads as reads_module
from rendio.platform.db import libpq_url
from rendio.platform.reads import ReadFailed, Reads

PID = "SELECT pg_backend_pid() AS pid"


@pytest.fixture
async def reads(database_url: str) -> AsyncIterator[Reads]:
    reads = Reads(libpq_url(database_url), size=2)
    await reads.open()
    yield reads
    await reads.aclose()


async def pid(reads: Reads) -> int:
    row = await reads.one(PID, ())
    assert row is not None
    return int(row["pid"])


async def test_many_reads_share_at_most_size_connections(reads: Reads) -> None:
    async def slow_pid() -> int:
        row = await reads.one("SELECT pg_backend_pid() AS pid, pg_sleep(0.05)", ())
        assert row is not None
        return int(row["pid"])

    pids = await asyncio.gather(*(slow_pid() for _ in range(12)))
    assert len(set(pids)) == 2  # twelve reads at once, two connections, each used again
    assert await pid(reads) in pids


async def test_a_cancelled_read_frees_its_slot_and_its_connection_is_not_reused(
    reads: Reads,
) -> None:
    first = await pid(reads)
    # Each read takes the idle connection `first` (the last one used) and is cancelled mid-query;
    # more cancellations than slots, so a slot kept by a cancelled read would starve the rest.
    for _ in range(3):
        sleeping = asyncio.create_task(reads.one("SELECT pg_sleep(30)", ()))
        await asyncio.sleep(0.2)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
    after = await asyncio.wait_for(asyncio.gather(pid(reads), pid(reads)), 5)
    assert first not in after  # the connection cancelled mid-query was closed, not handed on


async def test_a_read_waits_for_a_free_connection_only_so_long(
    reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.gather(*(reads.one("SELECT pg_sleep(0.1)", ()) for _ in range(2)))
    # Both connections made (their statements may take 5 s); now a free one is awaited 0.5 s.
    monkeypatch.setattr(reads_module, "WAIT_SECONDS", 0.5)
    busy = [asyncio.create_task(reads.one("SELECT pg_sleep(3)", ())) for _ in range(2)]
    await asyncio.sleep(0.2)
    try:
        with pytest.raises(ReadFailed, match="no free connection"):
            await reads.one(PID, ())
    finally:
        for task in busy:
            task.cancel()
        await asyncio.gather(*busy, return_exceptions=True)
    assert await asyncio.wait_for(pid(reads), 5) > 0


async def test_a_url_written_for_libpq_reads_too(database_url: str) -> None:
    # asyncpg sends options it does not know to the server as settings, which refuses these.
    url = libpq_url(database_url)
    joiner = "&" if "?" in url else "?"
    reads = Reads(
        f"{url}{joiner}connect_timeout=10&keepalives=1&application_name=rendio-test", size=1
    )
    await reads.open()
    try:
        row = await reads.one("SELECT current_setting('application_name') AS name", ())
    finally:
        await reads.aclose()
    assert row == {"name": "rendio-test"}  # server settings in the URL still reach the server
