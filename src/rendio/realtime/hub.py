"""Row changes fanned out to the sockets that may see them.

Every API process LISTENs on `rendio_changes` (through the process's one listener,
`platform/notices.py`), so a change committed anywhere — a worker on another host, another API
replica — reaches the sockets held here. Changes are routed by (table, owner): a socket
subscribes for its own user only, so whatever a binding's filter asks, another user's row is
never even offered to it. Changes committed while the listener was down are not replayed
(clients re-read on reconnect, as with Supabase Realtime).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from rendio.platform.notices import Notices
from rendio.realtime.changes import BadChange, Change, parse_notice
from rendio.rest.exposure import TABLES

log = structlog.get_logger("rendio.realtime")

CHANNEL = "rendio_changes"
Sink = Callable[[Change], None]
# Subscriptions one user may hold across all sockets of this process (a channel holds one per
# table it streams), and rows waiting to be re-read; both bound what a client can make us hold.
MAX_PER_USER = 1000
MAX_REREADS = 1024


class TooManySubscriptions(Exception):
    """The user already holds MAX_PER_USER subscriptions here."""


class ChangeHub:
    def __init__(self, notices: Notices, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._notices = notices
        self._sessions = sessions
        self._routes: dict[tuple[str, str], set[Sink]] = defaultdict(set)
        self._per_user: Counter[str] = Counter()
        self._rereads: asyncio.Queue[Change] = asyncio.Queue(MAX_REREADS)
        self._rereader: asyncio.Task[None] | None = None
        # Open sockets, in all and by client address (kept by the endpoint).
        self.sockets = 0
        self.sockets_from: Counter[str] = Counter()
        notices.listen(CHANNEL, self._dispatch)

    async def subscribe(
        self, tables: Collection[str], owner: str, sink: Sink, *, wait: float = 5
    ) -> None:
        """Route the changes of `owner`'s rows in `tables` to `sink`, once the listener is on
        (so a change committed after the join is never missed). Every route is in place before
        the first await, so an `unsubscribe` of the same tables made meanwhile removes them all.
        """
        owner = owner.lower()
        if self._per_user[owner] + len(tables) > MAX_PER_USER:
            raise TooManySubscriptions(f"at most {MAX_PER_USER} subscriptions per user")
        for table in tables:
            sinks = self._routes[(table, owner)]
            if sink not in sinks:
                sinks.add(sink)
                self._per_user[owner] += 1
        await self._notices.wait_connected(wait)

    def unsubscribe(self, tables: Collection[str], owner: str, sink: Sink) -> None:
        owner = owner.lower()
        for table in tables:
            sinks = self._routes.get((table, owner))
            if sinks is None or sink not in sinks:
                continue
            sinks.discard(sink)
            if not sinks:
                del self._routes[(table, owner)]
            self._per_user[owner] -= 1
            if self._per_user[owner] <= 0:
                del self._per_user[owner]

    def subscriptions(self, owner: str) -> int:
        return self._per_user.get(owner.lower(), 0)

    async def aclose(self) -> None:
        if self._rereader is not None:
            self._rereader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rereader

    def _dispatch(self, payload: str) -> None:
        if not self._routes:  # nobody listens here: every write still sends a notice
            return
        try:
            change = parse_notice(payload)
        except BadChange as error:
            log.warning("realtime_bad_notice", notice=str(error))
            return
        sinks = self._routes.get((change.table, change.owner))
        if not sinks:
            return
        if change.reread:
            self._queue_reread(change)
            return
        self.deliver(change, sinks)

    def deliver(self, change: Change, sinks: set[Sink]) -> None:
        for sink in list(sinks):
            try:
                sink(change)
            except Exception:  # one broken socket must not stop the others' changes
                log.exception("realtime_sink_failed")

    def _queue_reread(self, change: Change) -> None:
        """Rows too large for a NOTIFY payload are re-read one at a time by one task, on the
        app's pool; past MAX_REREADS waiting, a change is dropped (and logged) rather than held.
        """
        try:
            self._rereads.put_nowait(change)
        except asyncio.QueueFull:
            log.warning("realtime_reread_dropped", table=change.table, key=change.key)
            return
        if self._rereader is None or self._rereader.done():
            self._rereader = asyncio.create_task(self._reread_all(), name="realtime-rereads")

    async def _reread_all(self) -> None:
        while not self._rereads.empty():
            await self._reread(self._rereads.get_nowait())

    async def _reread(self, change: Change) -> None:
        """A row too large for a NOTIFY payload: read its exposed columns now."""
        exposed = TABLES[change.table]
        key_column = exposed.table.primary_key.columns.values()[0]
        statement = select(*(exposed.column(name) for name in exposed.columns)).where(
            key_column == change.key
        )
        try:
            async with self._sessions() as session:
                row = (await session.execute(statement)).mappings().one_or_none()
        except Exception as error:
            log.warning("realtime_reread_failed", error=str(error))
            return
        if row is None:
            return
        record: dict[str, Any] = {name: _json_value(value) for name, value in row.items()}
        full = Change(
            change.table,
            change.type,
            change.owner,
            change.key,
            change.at,
            record,
            change.old_record,
        )
        sinks = self._routes.get((change.table, change.owner))
        if sinks:
            self.deliver(full, sinks)


def _json_value(value: Any) -> Any:
    """A column value as `to_jsonb` would have shown it."""
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)
