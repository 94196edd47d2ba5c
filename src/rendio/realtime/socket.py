"""One realtime socket: Phoenix's heartbeat, join, leave and `access_token`, and the changes
of the channels it joined.

Bounds, so one client cannot make the process hold unbounded memory or work: a frame size
cap, a channel cap, a send queue per socket (a consumer too slow to drain it is dropped), an
idle timeout (Phoenix's 60 s without a message), and each channel's token expiry — a socket
whose token runs out without an `access_token` update is told so and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.websockets import WebSocket

from rendio.realtime.changes import Change
from rendio.realtime.channels import Channel, JoinRefused, parse_bindings
from rendio.realtime.frames import BadFrame, Message, decode, encode, reply
from rendio.realtime.hub import ChangeHub, TooManySubscriptions
from rendio.rest.exposure import Exposed

log = structlog.get_logger("rendio.realtime")

IDLE_SECONDS = 60.0
MAX_FRAME_CHARS = 65_536
MAX_TOPIC_CHARS = 256
# Close codes: policy (a bad frame, a token that ran out), and "try again later" (overloaded).
POLICY = 1008
OVERLOADED = 1013


class TokenRefused(Exception):
    """A token that does not stand for a live session (the reason is safe to show)."""


# token → (user id or None for the anon key, expiry or None); raises TokenRefused.
Identify = Callable[[str | None], Awaitable[tuple[str | None, int | None]]]
Present = Callable[[Exposed, dict[str, Any]], Any]


class RealtimeSocket:
    def __init__(
        self,
        websocket: WebSocket,
        vsn: str,
        hub: ChangeHub,
        identify: Identify,
        present: Present,
        *,
        max_channels: int,
        queue_size: int,
    ) -> None:
        self._ws = websocket
        self._vsn = vsn
        self._hub = hub
        self._identify = identify
        self._present = present
        self._max_channels = max_channels
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self._channels: dict[str, Channel] = {}
        self._close_code: int | None = None
        self._closing = asyncio.Event()
        self._client_left = False

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            await self._read()
        finally:
            self._shut(1000)  # no-op if already shut; wakes the writer if the client left
            for channel in list(self._channels.values()):
                self._drop(channel)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(writer), 1)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if not self._client_left:  # a socket the client closed needs no close from us
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._ws.close(self._close_code or 1000), 1)

    # — sending —

    def send(self, message: Message) -> None:
        """Queue a message; a socket whose queue is full is too slow and is dropped."""
        if self._close_code is not None:
            return
        try:
            self._queue.put_nowait(encode(message, self._vsn))
        except asyncio.QueueFull:
            log.warning("realtime_slow_consumer_dropped", queued=self._queue.qsize())
            self._shut(OVERLOADED)

    def _shut(self, code: int, *, flush: bool = False) -> None:
        """Stop reading; `run` closes the socket with `code` once the writer has sent what is
        queued (with `flush`) or at once (what was not sent yet is dropped)."""
        if self._close_code is not None:
            return
        self._close_code = code
        self._closing.set()
        if not flush or self._queue.full():
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def _write(self) -> None:
        while True:
            text = await self._queue.get()
            if text is None:
                return
            await self._ws.send_text(text)

    # — receiving —

    async def _read(self) -> None:
        while self._close_code is None:
            receive = asyncio.ensure_future(self._ws.receive())
            writer_done = asyncio.ensure_future(self._closing.wait())
            done, _ = await asyncio.wait(
                {receive, writer_done}, timeout=IDLE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            writer_done.cancel()
            if receive not in done:
                receive.cancel()
                if not done:  # nothing from the client for IDLE_SECONDS
                    self._shut(1000)
                return
            frame = receive.result()
            if frame["type"] == "websocket.disconnect":
                self._client_left = True
                return
            text = frame.get("text")
            if text is None:  # binary broadcast frames: not supported here
                continue
            if len(text) > MAX_FRAME_CHARS:
                self._shut(1009)
                return
            try:
                message = decode(text, self._vsn)
            except BadFrame as error:
                log.info("realtime_bad_frame", error=str(error))
                self._shut(POLICY)
                return
            try:
                await self._handle(message)
            except Exception:  # a bug or a database failure answers this message, not the socket
                log.exception("realtime_message_failed", event=message.event)
                self.send(reply(message, "error", {"reason": "the server could not do that"}))

    async def _handle(self, message: Message) -> None:
        if message.topic == "phoenix":
            if message.event == "heartbeat":
                self.send(reply(message, "ok", {}))
            return
        if message.event == "phx_join":
            await self._join(message)
            return
        channel = self._channels.get(message.topic)
        if channel is None:
            self.send(reply(message, "error", {"reason": "unmatched topic"}))
        elif message.event == "phx_leave":
            self._drop(channel)
            self.send(reply(message, "ok", {}))
            self.send(Message(channel.topic, "phx_close", {}, channel.join_ref, channel.join_ref))
        elif message.event == "access_token":
            await self._refresh(channel, message.payload.get("access_token"))
        else:
            reason = f"{message.event} is not supported by this server"
            self.send(reply(message, "error", {"reason": reason}))

    # — channels —

    async def _join(self, message: Message) -> None:
        topic = message.topic
        if not topic.startswith("realtime:") or len(topic) > MAX_TOPIC_CHARS:
            reason = f"topics are realtime:<name>, at most {MAX_TOPIC_CHARS} characters"
            self.send(reply(message, "error", {"reason": reason}))
            return
        if topic not in self._channels and len(self._channels) >= self._max_channels:
            reason = f"at most {self._max_channels} channels per connection"
            self.send(reply(message, "error", {"reason": reason}))
            return
        try:
            echoed, bindings = parse_bindings(message.payload.get("config"))
            user_id, expires_at = await self._identify(_token(message.payload))
        except (JoinRefused, TokenRefused) as refused:
            self.send(reply(message, "error", {"reason": str(refused)}))
            return
        old = self._channels.get(topic)
        if old is not None:  # a second join of a topic replaces the first, as in Phoenix
            self._drop(old)
            self.send(Message(topic, "phx_close", {}, old.join_ref, old.join_ref))
        channel = Channel(topic, message.join_ref, user_id, expires_at, bindings)
        self._channels[topic] = channel
        try:
            await self._subscribe(channel)
        except TooManySubscriptions as refused:
            self._drop(channel)
            self.send(reply(message, "error", {"reason": str(refused)}))
            return
        if self._channels.get(topic) is not channel:
            return  # left, replaced or shut while the listener was starting
        self._time(channel)
        self.send(reply(message, "ok", {"postgres_changes": echoed}))
        if bindings:
            self._system(channel, "ok", "Subscribed to PostgreSQL", "postgres_changes")

    def _system(self, channel: Channel, status: str, text: str, extension: str) -> None:
        payload = {
            "extension": extension,
            "status": status,
            "message": text,
            "channel": channel.name,
        }
        self.send(Message(channel.topic, "system", payload, None, channel.join_ref))

    async def _subscribe(self, channel: Channel) -> None:
        if channel.user_id is None or not channel.bindings:
            return  # the anon key owns no streamed rows

        def sink(change: Change) -> None:
            payload = channel.payload(change, self._present)
            if payload is not None:
                self.send(Message(channel.topic, "postgres_changes", payload))

        channel.sink = sink
        await self._hub.subscribe(channel.tables(), channel.user_id, sink)

    def _drop(self, channel: Channel) -> None:
        self._channels.pop(channel.topic, None)
        if channel.timer is not None:
            channel.timer.cancel()
            channel.timer = None
        if channel.sink is not None and channel.user_id is not None:
            self._hub.unsubscribe(channel.tables(), channel.user_id, channel.sink)
            channel.sink = None

    async def _refresh(self, channel: Channel, token: object) -> None:
        """`access_token`: the client's new token; a bad one ends the channel."""
        try:
            user_id, expires_at = await self._identify(token if isinstance(token, str) else None)
        except TokenRefused as refused:
            self._end(channel, str(refused))
            return
        if self._channels.get(channel.topic) is not channel:
            return  # left or replaced while the token was checked
        if user_id != channel.user_id:
            self._drop(channel)
            channel.user_id = user_id
            self._channels[channel.topic] = channel
            try:
                await self._subscribe(channel)
            except TooManySubscriptions as refused:
                self._end(channel, str(refused))
                return
            if self._channels.get(channel.topic) is not channel:
                return
        channel.expires_at = expires_at
        self._time(channel)

    def _time(self, channel: Channel) -> None:
        """(Re)arm the channel's expiry: a timer, not a polling task per socket."""
        if channel.timer is not None:
            channel.timer.cancel()
            channel.timer = None
        if channel.expires_at is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, channel.expires_at - time.time())
            channel.timer = loop.call_later(delay, self._expire, channel)

    def _expire(self, channel: Channel) -> None:
        """A token ran out without an `access_token` update: end its channel, then the socket."""
        channel.timer = None
        if self._channels.get(channel.topic) is channel:
            self._end(channel, "Token has expired")
            self._shut(POLICY, flush=True)

    def _end(self, channel: Channel, reason: str) -> None:
        self._drop(channel)
        self._system(channel, "error", reason, "system")
        self.send(Message(channel.topic, "phx_close", {}, channel.join_ref, channel.join_ref))


def _token(payload: dict[str, Any]) -> str | None:
    token = payload.get("access_token")
    return token if isinstance(token, str) and token else None
