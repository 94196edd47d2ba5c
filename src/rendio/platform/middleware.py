"""The request middleware: plain ASGI (no BaseHTTPMiddleware) because it sits on every request.

It assigns the request id, refuses oversized or non-JSON bodies before any handler reads them,
answers what escapes every handler, and writes one log line and the metrics when the response is
done. Refusals are rendered by the path's error renderer (`http.Renderers`).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rendio.platform import metrics
from rendio.platform.client_ip import Network, client_ip
from rendio.platform.errors import ErrorCode
from rendio.platform.http import Problem, Renderers
from rendio.platform.ratelimit import STATE_KEY, RateLimiter

PER_IP = "per-ip"

log = structlog.get_logger("rendio.http")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Probes are answered even when busy: a load balancer must not take a busy process for dead.
_ALWAYS_SERVED = {"/health", "/ready", "/metrics"}


class BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _all_values(scope: Scope, name: bytes) -> str | None:
    """Every line of a repeatable header, joined in order (a proxy may add its own line)."""
    values = [value.decode("latin-1") for key, value in scope.get("headers", ()) if key == name]
    return ", ".join(values) if values else None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestMiddleware:
    """Request id, body guards, the last line of defence, one access-log line and metrics."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_in_flight: int,
        renderers: Renderers,
        limiter: RateLimiter | None = None,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.renderers = renderers
        self.limiter = limiter
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        client_id = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = (
            client_id if client_id and _REQUEST_ID_PATTERN.match(client_id) else uuid.uuid4().hex
        )
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        peer = scope.get("client")
        state["client_ip"] = client_ip(
            peer[0] if peer else None,
            _all_values(scope, b"x-forwarded-for"),
            self.trusted_proxies,
        )
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                for decision in state.get(STATE_KEY, {}).values():
                    headers += decision.headers()
                message = {**message, "headers": headers}
            await send(message)

        counted = scope.get("path") not in _ALWAYS_SERVED
        if counted:
            self.in_flight += 1
        try:
            refusal = self._refuse_body(scope)
            if counted and self.in_flight > self.max_in_flight:
                refusal = self._answer(
                    scope, Problem(ErrorCode.UNAVAILABLE, {"reason": "busy"}, {"Retry-After": "1"})
                )
            if counted and refusal is None and self.limiter is not None:
                refusal = await self._ceiling(scope, state["client_ip"])
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except ClientDisconnect:
            return  # the client left (or the server cut a body that was too slow)
        except BodyTooLarge:
            if status_holder["started"]:
                raise
            await self._too_large(scope)(scope, receive, send_with_id)
        except Exception as exc:
            # Last line of defence: log the trace, answer cleanly, never leak details.
            log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
            if status_holder["started"]:
                raise
            state["error"] = type(exc).__name__
            response = self._answer(scope, Problem(ErrorCode.INTERNAL_ERROR))
            await response(scope, receive, send_with_id)
        finally:
            if counted:
                self.in_flight -= 1
            self._record(scope, request_id, int(status_holder["status"]), started)

    async def _ceiling(self, scope: Scope, address: str) -> ASGIApp | None:
        """The per-IP ceiling on every request (probes aside)."""
        assert self.limiter is not None
        decision = await self.limiter.over_limit(PER_IP, address)
        if decision is None:
            return None
        refused = decision.refusal()
        headers = refused.headers | {k.decode(): v.decode() for k, v in decision.headers()}
        return self._answer(scope, Problem(refused.code, refused.details, headers))

    def _answer(self, scope: Scope, problem: Problem) -> ASGIApp:
        return self.renderers.answer(scope, problem)

    def _refuse_body(self, scope: Scope) -> ASGIApp | None:
        if scope["method"] not in _BODY_METHODS:
            return None
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                return self._invalid(scope, {"body": "invalid Content-Length"})
            if int(length) > self.max_body_bytes:
                return self._too_large(scope)
            if int(length) == 0:
                return None
        has_body = length is not None or _header(scope, b"transfer-encoding") is not None
        if has_body and not _is_json(_header(scope, b"content-type")):
            return self._invalid(scope, {"content_type": "must be application/json"})
        return None

    def _too_large(self, scope: Scope) -> ASGIApp:
        return self._invalid(scope, {"body": "too large", "max_bytes": self.max_body_bytes})

    def _invalid(self, scope: Scope, details: dict[str, Any]) -> ASGIApp:
        return self._answer(scope, Problem(ErrorCode.VALIDATION_FAILED, details))

    def _capped(self, receive: Receive) -> Receive:
        remaining = self.max_body_bytes

        async def capped_receive() -> Message:
            nonlocal remaining
            message = await receive()
            if message["type"] == "http.request":
                remaining -= len(message.get("body", b""))
                if remaining < 0:
                    raise BodyTooLarge
            return message

        return capped_receive

    def _record(self, scope: Scope, request_id: str, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        metrics.observe(scope["method"], template, status, elapsed)
        state = scope.get("state", {})
        log.info(
            "request",
            method=scope["method"],
            route=template,
            path=scope.get("path"),
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            request_id=request_id,
            user_id=state.get("user_id"),
        )
