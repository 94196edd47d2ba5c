"""How errors are answered: the SPEC envelope by default, another shape under a path prefix.

Every failure on the HTTP edge — a domain's AppError, a body that does not parse, an unknown
path, a database error, an unhandled exception, a body refused by the middleware — becomes one
`Problem` (a code and its details) and is rendered by the renderer registered for the request's
path prefix. The composition root registers them; a domain with a wire contract of its own
(identity's GoTrue shape under `/auth/v1`) brings its renderer, and this module knows none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from rendio.platform import i18n
from rendio.platform.errors import HTTP_STATUS, AppError, ErrorCode
from rendio.platform.reads import ReadFailed
from rendio.platform.validation import field_problems

log = structlog.get_logger("rendio.http")

MALFORMED_JSON = "malformed JSON"
_HTTP_TO_CODE = {
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


@dataclass(frozen=True)
class Problem:
    code: ErrorCode
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class ErrorRenderer(Protocol):
    def __call__(self, problem: Problem, accept_language: str | None) -> Response: ...


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


def render_envelope(problem: Problem, accept_language: str | None) -> Response:
    """SPEC §3: `{"error": {"code", "message", "details"}}`, one HTTP status per code."""
    body = envelope(problem.code, problem.details, accept_language)
    return JSONResponse(body, status_code=HTTP_STATUS[problem.code], headers=problem.headers)


Observer = Callable[[Scope, Problem], None]


class Renderers:
    """Error renderers by path prefix (longest first); the envelope everywhere else.

    Every error answer passes through `answer`, so `observe` (the error log and its counters)
    sees each one, whichever layer refused the request.
    """

    def __init__(
        self, by_prefix: Mapping[str, ErrorRenderer], observe: Observer | None = None
    ) -> None:
        self._by_prefix = sorted(by_prefix.items(), key=lambda item: -len(item[0]))
        self._observe = observe

    def for_path(self, path: str) -> ErrorRenderer:
        for prefix, renderer in self._by_prefix:
            if path.startswith(prefix):
                return renderer
        return render_envelope

    def answer(self, scope: Scope, problem: Problem) -> Response:
        """The response to `problem` for the request in `scope`."""
        if self._observe is not None:
            self._observe(scope, problem)
        language = None
        for key, value in scope.get("headers", ()):
            if key == b"accept-language":
                language = value.decode("latin-1")
                break
        return self.for_path(scope.get("path", ""))(problem, language)


def _validation_details(error: RequestValidationError, language: str) -> dict[str, Any]:
    if any(item.get("type") == "json_invalid" for item in error.errors()):
        return {"body": MALFORMED_JSON}
    return {"fields": field_problems(error.errors(), root="", language=language)}


def install_error_handlers(app: FastAPI, renderers: Renderers) -> None:
    def answer(request: Request, problem: Problem) -> Response:
        return renderers.answer(request.scope, problem)

    async def on_app_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AppError)
        return answer(request, Problem(exc.code, exc.details, exc.headers))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        language = i18n.negotiate(request.headers.get("accept-language"))
        details = _validation_details(exc, language)
        return answer(request, Problem(ErrorCode.VALIDATION_FAILED, details))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:
            # FastAPI's answer to a body json cannot parse at all (nesting too deep, an integer
            # too long, bytes that are not UTF-8): the same problem as malformed JSON.
            return answer(request, Problem(ErrorCode.VALIDATION_FAILED, {"body": MALFORMED_JSON}))
        code = _HTTP_TO_CODE.get(exc.status_code)
        if code is None:
            code = (
                ErrorCode.VALIDATION_FAILED if exc.status_code < 500 else ErrorCode.INTERNAL_ERROR
            )
        return answer(request, Problem(code))

    async def on_database(request: Request, exc: Exception) -> Response:
        if isinstance(getattr(exc, "orig", None), UnicodeError):
            return await on_bad_text(request, exc)
        log.error("database_error", error=type(exc).__name__, exc_info=exc)
        request.scope.setdefault("state", {})["error"] = type(exc).__name__
        return answer(request, Problem(ErrorCode.DATABASE_ERROR))

    async def on_bad_text(request: Request, exc: Exception) -> Response:
        """JSON may carry lone surrogates (`"\\ud800"`), which no UTF-8 text can hold; the
        first attempt to encode one lands here, and the transaction has rolled back."""
        problem = "text must be valid Unicode (no lone surrogates)"
        return answer(request, Problem(ErrorCode.VALIDATION_FAILED, {"body": problem}))

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(SQLAlchemyError, on_database)
    app.add_exception_handler(psycopg.Error, on_database)  # psycopg used directly
    app.add_exception_handler(ReadFailed, on_database)  # the lean reads (platform/reads.py)
    app.add_exception_handler(UnicodeError, on_bad_text)
