"""PostgREST's error answers: `{code, message, details, hint}`, all four keys always present.

postgrest-py up to 2.30 fails to parse an error body missing any of the four keys, and
supabase-swift's `maybeSingle()` reads the row count out of PGRST116's `details`, so these
texts follow PostgREST's own (src/PostgREST/Error.hs) to the letter where a client reads them.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import Response

from rendio.platform import i18n
from rendio.platform.errors import HTTP_STATUS
from rendio.platform.http import Problem

PREFIX = "/rest/v1/"


class RestProblem(Exception):
    """A refused `/rest/v1` request, rendered as PostgREST renders its errors."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint
        self.headers = headers or {}

    def response(self) -> Response:
        body = {
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        }
        headers = {"Proxy-Status": f"PostgREST; error={self.code}", **self.headers}
        return Response(
            json.dumps(body).encode(),
            status_code=self.status,
            media_type="application/json",
            headers=headers,
        )


def parse_error(what: str, text: str, details: str) -> RestProblem:
    """PGRST100: a query parameter that does not follow the grammar."""
    return RestProblem(400, "PGRST100", f'"failed to parse {what} ({text})"', details)


def unknown_column(table: str, column: str) -> RestProblem:
    """Postgres' own 42703, which PostgREST passes on as a 400.

    A column that exists but is not exposed is reported the same way, so the answer does not
    tell a stranger which hidden columns there are.
    """
    return RestProblem(400, "42703", f"column {table}.{column} does not exist")


def unknown_table(table: str) -> RestProblem:
    return RestProblem(
        404, "PGRST205", f"Could not find the table 'public.{table}' in the schema cache"
    )


def not_one_row(count: int) -> RestProblem:
    """406 for `single()` when the result is not exactly one row (supabase-swift parses the
    number out of `details`)."""
    return RestProblem(
        406,
        "PGRST116",
        "Cannot coerce the result to a single JSON object",
        f"The result contains {count} rows",
    )


def read_only(table: str, method: str) -> RestProblem:
    """What PostgREST answers when the role lacks the privilege (42501; 401 for the anon role,
    403 otherwise — here writes are refused to everyone, so always 403)."""
    action = {"POST": "INSERT", "PATCH": "UPDATE", "PUT": "UPDATE", "DELETE": "DELETE"}
    verb = action.get(method, method)
    return RestProblem(
        403,
        "42501",
        f"permission denied for table {table}",
        f"{verb} is not allowed: this API is read-only; use /functions/v1 to make changes",
    )


def render_problem(problem: Problem, accept_language: str | None) -> Response:
    """The `/rest/v1/` renderer for failures raised outside this package (rate limits, bodies
    refused by the middleware, database outages): our code and localized message in
    PostgREST's four keys, under the code's own HTTP status."""
    language = i18n.negotiate(accept_language)
    body = {
        "code": problem.code.value,
        "details": json.dumps(problem.details) if problem.details else None,
        "hint": None,
        "message": i18n.message(problem.code.value, language, problem.details),
    }
    return Response(
        json.dumps(body).encode(),
        status_code=HTTP_STATUS[problem.code],
        media_type="application/json",
        headers=problem.headers,
    )


async def on_rest_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RestProblem)
    return exc.response()
