"""The HTTP server: uvicorn, with the bounds it lacks, so strangers cannot make it hold
unbounded memory or connections.

uvicorn's httptools protocol has no cap on header size, no timeout for reading headers or a
body, and answers its concurrency limit in plain text. `guarded_protocol` subclasses it to add:
* a header size cap: a request whose headers exceed `max_header_bytes` gets 431 and is closed
  (counted as bytes arrive, so at most one read beyond the cap is ever buffered);
* a header timeout: a connection must deliver a request's headers within `header_timeout` of
  its first byte (or of connecting): 408 if it started one, a silent close if it sent nothing;
* a body timeout: the body must arrive within `body_timeout` of the headers: 408 and close;
* a connection cap: connections beyond `max_connections` get 503 and are closed at once.
Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive`. Refusals are
the SPEC envelope (English: they are written before any request is parsed).
"""

from __future__ import annotations

import asyncio
import gc
import json
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.protocols.utils import get_remote_addr

from rendio.config import Settings
from rendio.platform.errors import HTTP_STATUS, ErrorCode
from rendio.platform.http import envelope

_REASONS = {
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: int
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            keep_alive_timeout=settings.keep_alive_timeout,
            max_connections=settings.max_connections,
        )


def refusal(code: ErrorCode, details: dict[str, Any]) -> bytes:
    """A complete HTTP/1.1 response with the error envelope, closing the connection."""
    status = HTTP_STATUS[code]
    body = json.dumps(envelope(code, details, None)).encode()
    head = (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n" % (status, _REASONS[status], len(body))
    )
    if code == ErrorCode.UNAVAILABLE:
        head += b"retry-after: 1\r\n"
    return head + b"\r\n" + body


def guarded_protocol(limits: Limits) -> type[HttpToolsProtocol]:
    class GuardedProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_headers = True
            self._header_bytes = 0  # as received, across reads
            self._parsed_bytes = 0  # as parsed: a whole header can arrive in one read
            self._oversized = False
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None

        # uvicorn itself narrows the protocol's BaseTransport to Transport the same way.
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.logger.warning("connection refused: %d open", len(self.connections))
                self._refuse(ErrorCode.UNAVAILABLE, {"reason": "too many connections"})
                return
            self._header_timer = self.loop.call_later(limits.header_timeout, self._headers_late)

        def data_received(self, data: bytes) -> None:
            if self._in_headers:
                self._header_bytes += len(data)
                if self._header_timer is None:
                    self._header_timer = self.loop.call_later(
                        limits.header_timeout, self._headers_late
                    )
            super().data_received(data)
            too_many = self._in_headers and self._header_bytes > limits.max_header_bytes
            if too_many or self._oversized:
                details = {"max_bytes": limits.max_header_bytes}
                self._refuse(ErrorCode.HEADERS_TOO_LARGE, details)

        def on_message_begin(self) -> None:
            self._parsed_bytes, self._oversized = 0, False
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._parsed_bytes += len(url)
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._parsed_bytes += len(name) + len(value) + 4
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_headers = False
            self._cancel_timers()
            if self._parsed_bytes > limits.max_header_bytes:
                self._oversized = True  # refused once this read is parsed; the app never sees it
                return
            super().on_headers_complete()
            # A pipelined request waits (reading paused) behind a response still being sent: its
            # body timer would fire into that response, so only a request that starts gets one.
            if not self.pipeline:
                self._body_timer = self.loop.call_later(limits.body_timeout, self._body_late)

        def on_body(self, body: bytes) -> None:
            if not self._oversized:
                super().on_body(body)

        def on_message_complete(self) -> None:
            self._cancel_timers()
            self._in_headers, self._header_bytes = True, 0
            if not self._oversized:
                super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        def _cancel_timers(self) -> None:
            for timer in (self._header_timer, self._body_timer):
                if timer is not None:
                    timer.cancel()
            self._header_timer = self._body_timer = None

        def _headers_late(self) -> None:
            if self._header_bytes == 0:  # an idle connection: nothing to answer
                self._cancel_timers()
                self.transport.close()
                return
            self._refuse(ErrorCode.REQUEST_TIMEOUT, {"reason": "headers took too long"})

        def _body_late(self) -> None:
            self._refuse(ErrorCode.REQUEST_TIMEOUT, {"reason": "body took too long"})

        def _refuse(self, code: ErrorCode, details: dict[str, Any]) -> None:
            """Answer (unless a response is already under way) and close the connection."""
            self._cancel_timers()
            if self.transport.is_closing():
                return
            # The app, if it is serving this request, sees the client disconnect (uvicorn marks
            # the request when the connection is lost) and its answer is dropped.
            cycle: RequestResponseCycle | None = self.cycle  # None before the first request
            if cycle is None or cycle.response_complete or not cycle.response_started:
                self.transport.write(refusal(code, details))
            client = get_remote_addr(self.transport)
            self.logger.info("connection refused: %s from %s", code.value, client)
            self.transport.close()

    return GuardedProtocol


def serve(app: Any, settings: Settings) -> None:
    """Run `app` until stopped, with the bounds in `settings`."""
    limits = Limits.of(settings)
    # What exists now (modules, routes, schemas, mappers: most of the process's objects) lives
    # as long as the process. Out of the cyclic collector's sight, a full collection no longer
    # walks it all: each took ~115 ms, every request waiting, the whole p99 tail under load.
    gc.collect()  # garbage made so far would be frozen with the rest, never to be freed
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        http=guarded_protocol(limits),
        timeout_keep_alive=limits.keep_alive_timeout,
        log_config=None,
        access_log=False,
        # Forwarded addresses are ours to judge (RENDIO_TRUSTED_PROXIES), not uvicorn's.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        # Realtime sockets: the sans-I/O websockets protocol held 500 idle joined sockets in the
        # least memory of uvicorn's three (bench/README.md); frames are small JSON messages.
        ws="websockets-sansio",
        ws_max_size=65_536,
    )
