"""One PostgreSQL LISTEN connection per API process, shared by everything that must notice a
change committed by another process (a worker, another replica, an operator's command).

A part registers a channel with two callbacks: one for each notice, and one told whether the
listener is connected. Notices sent while the connection was down are lost, so a part that
keeps state derived from the database must drop it when told `False` and may trust it again
only after `True` (told after LISTEN is on again). The connection is opened by `start` and
reopened after an outage, with a growing pause.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import make_conninfo

log = structlog.get_logger("rendio.notices")

_RECONNECT_SECONDS = (0.5, 1, 2, 5)
PING_SECONDS = 15.0
PING_TIMEOUT = 10
# TCP keepalives and a send timeout, so a dead peer is noticed by the kernel too.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


@dataclass(frozen=True)
class _Listener:
    on_notice: Callable[[str], None]
    on_status: Callable[[bool], None]


class Notices:
    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._channels: dict[str, list[_Listener]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._failures = 0  # connections in a row that did not get as far as LISTEN

    def listen(
        self,
        channel: str,
        on_notice: Callable[[str], None],
        on_status: Callable[[bool], None] = lambda _: None,
    ) -> None:
        """Register before `start` (LISTEN is issued for the channels known when connecting)."""
        if self._task is not None:
            raise RuntimeError("register every channel before the listener starts")
        self._channels.setdefault(channel, []).append(_Listener(on_notice, on_status))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notices-listener")

    async def wait_connected(self, seconds: float) -> bool:
        self.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), seconds)
        return self.connected.is_set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._set_status(False)

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._listen()
                except Exception as error:  # psycopg, the network, or a bug: never stop
                    self._set_status(False)
                    pause = _RECONNECT_SECONDS[min(self._failures, len(_RECONNECT_SECONDS) - 1)]
                    self._failures += 1
                    log.warning("notices_listener_lost", error=repr(error), retry_in=pause)
                    await asyncio.sleep(pause)
        finally:
            self._set_status(False)

    async def _listen(self) -> None:
        """LISTEN, then wait for notices; every PING_SECONDS of silence, ask the server
        something, so a connection a network dropped without a word (a NAT, a failover) is
        found out within PING_SECONDS + PING_TIMEOUT instead of the kernel's two hours."""
        conninfo = make_conninfo(self._url, connect_timeout=PING_TIMEOUT, **_KEEPALIVES)
        connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        async with connection:
            for channel in self._channels:
                listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                await connection.execute(listen)
            self._failures = 0
            self._set_status(True)
            log.info("notices_listening", channels=list(self._channels))
            while True:
                async for notice in connection.notifies(timeout=PING_SECONDS):
                    self._deliver(notice.channel, notice.payload)
                await asyncio.wait_for(connection.execute("SELECT 1"), PING_TIMEOUT)

    def _set_status(self, connected: bool) -> None:
        if connected == self.connected.is_set():
            return
        if connected:
            self.connected.set()
        else:
            self.connected.clear()
        for listeners in self._channels.values():
            for listener in listeners:
                try:
                    listener.on_status(connected)
                except Exception:  # one part's bug must not stop the others being told
                    log.exception("notices_callback_failed")

    def _deliver(self, channel: str, payload: str) -> None:
        for listener in self._channels.get(channel, ()):
            try:
                listener.on_notice(payload)
            except Exception:
                log.exception("notices_callback_failed", channel=channel)
