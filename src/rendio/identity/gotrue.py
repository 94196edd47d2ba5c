"""GoTrue's error shape, which `/auth/v1` answers in instead of the SPEC envelope.

The Supabase client libraries parse these answers themselves (`msg`, `code`, `error_code`, with
the `X-Supabase-Api-Version` and `x-sb-error-code` headers); supabase-swift would fail to decode
an `error` object. So identity raises `AuthApiError` on its own paths, and registers
`render_problem` for the `/auth/v1/` prefix, which turns every other failure there (bad bodies,
unknown paths, crashes) into GoTrue's shape too.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from rendio.platform.errors import ErrorCode
from rendio.platform.http import MALFORMED_JSON, Problem
from rendio.platform.validation import describe, field_problems

PREFIX = "/auth/v1/"
SUPABASE_API_VERSION = "2024-01-01"
# SPEC codes that can reach /auth/v1 without an AuthApiError, as GoTrue names them.
_GOTRUE_CODES = {
    ErrorCode.NOT_FOUND: (404, "not_found", "Not found"),
    ErrorCode.UNAUTHORIZED: (401, "no_authorization", "This endpoint requires a Bearer token"),
    ErrorCode.FORBIDDEN: (403, "bad_jwt", "Forbidden"),
    ErrorCode.RATE_LIMITED: (429, "over_request_rate_limit", "Request rate limit reached"),
}
Form = TypeVar("Form", bound=BaseModel)


class AuthApiError(Exception):
    """An error of the `/auth/v1` (Supabase Auth) surface, rendered in GoTrue's own shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(f"{status} {code}: {message}")


def error_response(error: AuthApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    """GoTrue's error body: read correctly whether or not the client sends an API version."""
    body = {
        "code": error.code,
        "error_code": error.code,
        "msg": error.message,
        "message": error.message,
    }
    all_headers = {
        **(headers or {}),
        "X-Supabase-Api-Version": SUPABASE_API_VERSION,
        "x-sb-error-code": error.code,
    }
    return JSONResponse(body, status_code=error.status, headers=all_headers)


def _as_gotrue(problem: Problem) -> AuthApiError:
    if problem.code == ErrorCode.VALIDATION_FAILED:
        details = problem.details
        if details.get("body") == MALFORMED_JSON:
            return AuthApiError(400, "bad_json", "Could not parse request body as JSON")
        if "fields" in details:
            return AuthApiError(400, "validation_failed", describe(details["fields"]))
        text = "; ".join(f"{name}: {value}" for name, value in details.items())
        return AuthApiError(400, "validation_failed", text or "Invalid request")
    if problem.code in _GOTRUE_CODES:
        return AuthApiError(*_GOTRUE_CODES[problem.code])
    return AuthApiError(500, "unexpected_failure", "Unexpected failure")


def render_problem(problem: Problem, accept_language: str | None) -> Response:
    """The `/auth/v1/` renderer for failures that are not an AuthApiError."""
    return error_response(_as_gotrue(problem), problem.headers)


async def on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthApiError)
    return error_response(exc)


def parse(form: type[Form], body: Any) -> Form:
    """A request body as `form`, or GoTrue's 400 `validation_failed` naming the fields."""
    try:
        return form.model_validate(body if body is not None else {})
    except ValidationError as error:
        raise AuthApiError(
            400, "validation_failed", describe(field_problems(error.errors()))
        ) from None
