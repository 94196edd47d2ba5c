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
from rendio.platform.openapi import (
    BODY_METHODS,
    SERVER_EDGE,
    Around,
    Responses,
    errors,
    status_response,
)
from rendio.platform.validation import describe, field_problems

PREFIX = "/auth/v1/"
SUPABASE_API_VERSION = "2024-01-01"
# SPEC codes that can reach /auth/v1 without an AuthApiError, as GoTrue names them.
_GOTRUE_CODES = {
    ErrorCode.NOT_FOUND: (404, "not_found", "Not found"),
    ErrorCode.UNAUTHORIZED: (401, "no_authorization", "This endpoint requires a Bearer token"),
    ErrorCode.API_KEY_INVALID: (401, "no_api_key", "No API key found in request"),
    ErrorCode.FORBIDDEN: (403, "bad_jwt", "Forbidden"),
    ErrorCode.RATE_LIMITED: (429, "over_request_rate_limit", "Request rate limit reached"),
}
Form = TypeVar("Form", bound=BaseModel)


class GoTrueError(BaseModel):
    """GoTrue's error body. `code` and `error_code` are the same machine-readable name (which
    one a client reads depends on its API version); `msg` and `message` the same English text."""

    code: str
    error_code: str
    msg: str
    message: str


# GoTrue's error codes as we use them, with a text for the examples of the OpenAPI document.
AUTH_CODES: dict[str, str] = {
    "bad_json": "Could not parse request body as JSON",
    "validation_failed": "refresh_token: Field required",
    "no_api_key": "No API key found in request",
    "no_authorization": "This endpoint requires a Bearer token",
    "bad_jwt": "invalid JWT: invalid or expired token",
    "session_not_found": "invalid JWT: session revoked",
    "user_banned": "User is banned",
    "not_admin": "Updating app_metadata requires admin privileges",
    "not_found": "Not found",
    "user_not_found": "User not found",
    "email_provider_disabled": "Only anonymous sign-up is offered",
    "phone_provider_disabled": "Phone sign-in is not offered",
    "refresh_token_not_found": "Invalid Refresh Token: Not Found",
    "refresh_token_already_used": "Invalid Refresh Token: Already Used",
    "unsupported_grant_type": "grant_type must be refresh_token or id_token",
    "provider_disabled": "Sign-in with provider 'google' is not enabled",
    "bad_oidc_token": "Invalid ID token: nonce mismatch",
    "over_request_rate_limit": "Request rate limit reached",
    "unexpected_failure": "Unexpected failure",
}
# What any /auth/v1 operation can answer from the layers around it (the apikey gate, body
# checks, the per-IP ceiling, the HTTP server's bounds, failures), in GoTrue's shape.
AUTH_EDGE = (
    (401, "no_api_key"),
    (429, "over_request_rate_limit"),
    (500, "unexpected_failure"),
)
AUTH_BODY = ((400, "bad_json"), (400, "validation_failed"))


def auth_errors(*errors: tuple[int, str]) -> Responses:
    """FastAPI `responses=` for GoTrue errors `(status, code)`, one entry per status."""
    by_status: dict[int, dict[str, tuple[str, Any]]] = {}
    for status, code in errors:
        text = AUTH_CODES[code]
        body = {"code": code, "error_code": code, "msg": text, "message": text}
        by_status.setdefault(status, {})[code] = (text, body)
    return {
        status: status_response(GoTrueError, group, "GoTrue error")
        for status, group in sorted(by_status.items())
    }


def around() -> list[Around]:
    """What is around every `/auth/v1` operation (see `platform/openapi.py`): GoTrue's shape
    for what passes through the app, the envelope for the HTTP server's own refusals."""
    return [
        Around(PREFIX, errors(*SERVER_EDGE)),
        Around(PREFIX, auth_errors(*AUTH_EDGE)),
        Around(PREFIX, auth_errors(*AUTH_BODY), methods=BODY_METHODS),
        Around(PREFIX, auth_errors(*AUTH_BODY), with_input=True),
    ]


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
