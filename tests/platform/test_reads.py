"""The lean reads' connections (platform/reads.py): bounded, reused, never handed on mid-query."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from rendio.platform import reads as reads_module
from rendio.platform.db import libpq_url
from rendio.platform.reads import ReadFailed, Reads
from tests.helpers.waiting import eventually

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


async def test_a_read_given_up_does_not_leave_its_statement_running(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled request closes its read's connection; the server ends the statement itself
    (statement_timeout), or it would hold a backend (and its locks) long after, each time."""
    monkeypatch.setattr(reads_module, "WAIT_SECONDS", 1)
    reads = Reads(libpq_url(database_url), size=1)
    await reads.open()
    marker = f"given_up_{uuid.uuid4().hex[:8]}"
    running = (
        "SELECT count(*) AS n FROM pg_stat_activity"
        f" WHERE query LIKE '%{marker}' AND pid <> pg_backend_pid() AND state = 'active'"
    )
    try:
        sleeping = asyncio.create_task(reads.one(f"SELECT pg_sleep(30) AS {marker}", ()))
        await asyncio.sleep(0.3)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping

        async def still_running() -> bool:
            row = await reads.one(running, ())
            return row is not None and row["n"] > 0

        async def ended() -> bool:
            return not await still_running()

        assert await still_running()  # closed on our side, still running on the server
        assert await eventually(ended, timeout=5)
    finally:
        await reads.aclose()


async def test_a_failing_statement_is_answered_at_once_and_spares_the_connections(
    reads: Reads,
) -> None:
    before = await pid(reads)
    with pytest.raises(ReadFailed, match="UndefinedTableError"):
        await reads.one("SELECT * FROM no_such_table", ())
    assert await pid(reads) == before  # the server's error left the connection in step
    with pytest.raises(ReadFailed, match="InterfaceError"):
        await reads.one("SELECT $1::int AS n", ())  # a parameter missing: asyncpg refuses it
    assert await pid(reads) > 0  # one failure, not a retry through every connection
