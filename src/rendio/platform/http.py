"""The HTTP edge: the error envelope, exception handlers and the request middleware.

The middleware is plain ASGI (no BaseHTTPMiddleware) because it sits on every request: it
assigns the request id, refuses oversized or non-JSON bodies before any handler reads them,
and writes one log line and the metrics when the response is done.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rendio.platform import i18n, metrics
from rendio.platform.errors import HTTP_STATUS, AppError, AuthApiError, ErrorCode

log = structlog.get_logger("rendio.http")

REQUEST_ID_HEADER = "x-request-id"
AUTH_PREFIX = "/auth/v1/"
SUPABASE_API_VERSION = "2024-01-01"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
_HTTP_TO_CODE = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


def envelope(
    code: ErrorCode, details: dict[str, Any], accept_language: str | None
) -> dict[str, Any]:
    language = i18n.negotiate(accept_language)
    return {
        "error": {
            "code": code.value,
            "message": i18n.message(code.value, language, details),
            "details": details,
        }
    }


def error_response(
    code: ErrorCode,
    details: dict[str, Any] | None = None,
    accept_language: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = envelope(code, details or {}, accept_language)
    return JSONResponse(body, status_code=HTTP_STATUS[code], headers=headers)


def gotrue_error_response(error: AuthApiError) -> JSONResponse:
    """GoTrue's error body: read correctly whether or not the client sends an API version."""
    body = {
        "code": error.code,
        "error_code": error.code,
        "msg": error.message,
        "message": error.message,
    }
    headers = {"X-Supabase-Api-Version": SUPABASE_API_VERSION, "x-sb-error-code": error.code}
    return JSONResponse(body, status_code=error.status, headers=headers)


def _is_auth_path(path: str) -> bool:
    """`/auth/v1` answers errors in GoTrue's shape, everything else in the SPEC envelope."""
    return path.startswith(AUTH_PREFIX)


def _field_problems(error: RequestValidationError) -> dict[str, Any]:
    fields = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return {"body": "malformed JSON"}
        location = ".".join(str(part) for part in item.get("loc", ()))
        fields.append({"field": location, "problem": item.get("msg", "invalid")})
    return {"fields": fields}


def _describe(problems: dict[str, Any]) -> str:
    if "body" in problems:
        return "Could not parse request body as JSON"
    return "; ".join(f"{item['field']}: {item['problem']}" for item in problems["fields"])


def install_error_handlers(app: FastAPI) -> None:
    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        return error_response(
            exc.code, exc.details, request.headers.get("accept-language"), exc.headers
        )

    async def on_auth_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AuthApiError)
        return gotrue_error_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if _is_auth_path(request.url.path):
            problems = _field_problems(exc)
            code = "bad_json" if "body" in problems else "validation_failed"
            return gotrue_error_response(AuthApiError(400, code, _describe(problems)))
        return error_response(
            ErrorCode.VALIDATION_FAILED,
            _field_problems(exc),
            request.headers.get("accept-language"),
        )

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if _is_auth_path(request.url.path):
            status = 404 if exc.status_code == 405 else exc.status_code
            return gotrue_error_response(AuthApiError(status, "not_found", "Not found"))
        code = _HTTP_TO_CODE.get(exc.status_code)
        if code is None:
            code = (
                ErrorCode.VALIDATION_FAILED if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
            )
        return error_response(code, {}, request.headers.get("accept-language"))

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(getattr(exc, "orig", None), UnicodeError):
            return await on_bad_text(request, exc)
        log.error("database_error", error=type(exc).__name__, exc_info=exc)
        return error_response(ErrorCode.DATABASE_ERROR, {}, request.headers.get("accept-language"))

    async def on_bad_text(request: Request, exc: Exception) -> JSONResponse:
        """JSON may carry lone surrogates (`"\\ud800"`), which no UTF-8 text can hold; the
        first attempt to encode one lands here, and the transaction has rolled back."""
        problem = "text must be valid Unicode (no lone surrogates)"
        if _is_auth_path(request.url.path):
            return gotrue_error_response(AuthApiError(400, "validation_failed", problem))
        return error_response(
            ErrorCode.VALIDATION_FAILED, {"body": problem}, request.headers.get("accept-language")
        )

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(AuthApiError, on_auth_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(SQLAlchemyError, on_database)
    app.add_exception_handler(UnicodeError, on_bad_text)


class BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


class RequestMiddleware:
    """Request id, body guards, one access-log line and metrics per request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        client_id = _header(scope, REQUEST_ID_HEADER.encode())
        request_id = (
            client_id if client_id and _REQUEST_ID_PATTERN.match(client_id) else uuid.uuid4().hex
        )
        scope.setdefault("state", {})["request_id"] = request_id
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            refusal = self._refuse_body(scope)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
            else:
                await self.app(scope, self._capped(receive), send_with_id)
        except BodyTooLarge:
            if status_holder["started"]:
                raise
            await self._too_large(scope)(scope, receive, send_with_id)
        except Exception as exc:
            # Last line of defence: log the trace, answer the envelope, never leak details.
            log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
            if status_holder["started"]:
                raise
            response = (
                gotrue_error_response(AuthApiError(500, "unexpected_failure", "Unexpected failure"))
                if _is_auth_path(scope.get("path", ""))
                else error_response(
                    ErrorCode.INTERNAL_ERROR, {}, _header(scope, b"accept-language")
                )
            )
            await response(scope, receive, send_with_id)
        finally:
            self._record(scope, request_id, int(status_holder["status"]), started)

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
        if _is_auth_path(scope.get("path", "")):
            problem = "; ".join(f"{name}: {value}" for name, value in details.items())
            return gotrue_error_response(AuthApiError(400, "validation_failed", problem))
        return error_response(
            ErrorCode.VALIDATION_FAILED, details, _header(scope, b"accept-language")
        )

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
