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

log = structlog.get_logger("rendio.notices")

_RECONNECT_SECONDS = (0.5, 1, 2, 5)


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
        attempt = 0
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                async with connection:
                    for channel in self._channels:
                        listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                        await connection.execute(listen)
                    attempt = 0
                    self._set_status(True)
                    log.info("notices_listening", channels=list(self._channels))
                    async for notice in connection.notifies():
                        self._deliver(notice.channel, notice.payload)
            except (psycopg.Error, OSError) as error:
                self._set_status(False)
                pause = _RECONNECT_SECONDS[min(attempt, len(_RECONNECT_SECONDS) - 1)]
                attempt += 1
                log.warning("notices_listener_lost", error=str(error), retry_in=pause)
                await asyncio.sleep(pause)

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
