"""`/rest/v1/<table>`: the PostgREST reads the Supabase clients make, and nothing else.

A read runs in one transaction: the caller's session is checked (logout and bans count at
once), then the transaction becomes the `rendio_rest` role with the caller's id in
`rendio.rest_user`, so PostgreSQL's row-level security applies on top of the compiled query's
own scope, and a statement timeout bounds the work. Writes are refused as PostgREST refuses a
role without the privilege.
"""

from __future__ import annotations

import hmac
import json
import uuid
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.generation.links import MediaLinks
from rendio.generation.services import GenerationDeps, GenerationServices
from rendio.identity.dependencies import TokenProblem, bearer_token, resolve_token
from rendio.platform.reads import Reads
from rendio.rest.compiler import CompiledRead, compile_read
from rendio.rest.exposure import TABLES, Exposed, visible_rows
from rendio.rest.grammar import parse_read
from rendio.rest.problems import RestProblem, not_one_row, read_only, unknown_table

router = APIRouter(prefix="/rest/v1", tags=["rest"], include_in_schema=False)

OBJECT = "application/vnd.pgrst.object+json"
MAX_QUERY_BYTES = 16_384
# SQLSTATEs a hostile or mistaken query can cause, answered as PostgREST answers them (its
# pgErrorStatus: 42501 forbidden, 42883 not found, other class 42 and data errors 400); a
# statement cut by the timeout and a pattern too complex to compile are the query's fault too.
# Anything else is a real database failure.
_CLIENT_SQLSTATES = {"42501": 403, "42883": 404, "57014": 400}
_CLIENT_CLASSES = {"22": 400, "42": 400, "54": 400}


async def require_rest_apikey(request: Request, services: GenerationDeps) -> None:
    """With RENDIO_ANON_KEY set, every /rest/v1 request must carry it (as Supabase's gateway
    requires); the code tells a misconfigured app from an expired session."""
    expected = services.settings.anon_key
    if expected is None:
        return
    given = request.headers.get("apikey") or request.query_params.get("apikey") or ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        message = "Invalid API key" if given else "No API key found in request"
        raise RestProblem(
            401, "ERR_4016", message, None, "Send the project's anon key in the apikey header"
        )


@router.api_route("/{table}", methods=["GET", "HEAD"])
async def read(table: str, request: Request, services: GenerationDeps) -> Response:
    exposed = TABLES.get(table)
    if exposed is None:
        raise unknown_table(table)
    single = _wants_object(request.headers.get("accept"))
    if len(request.scope.get("query_string", b"")) > MAX_QUERY_BYTES:
        raise RestProblem(414, "PGRST100", "The query string is too long")
    query = parse_read(request.query_params.multi_items())
    count_wanted = "count=" in request.headers.get("prefer", "")
    async with services.sessions() as session:
        user_id = await _caller(request, services.reads, services.secret)
        statement = compile_read(
            exposed,
            query,
            visible_rows(exposed, user_id, services.offered_providers),
            max_rows=services.settings.rest_max_rows,
        )
        rows, total = await _run(session, statement, user_id, count_wanted, services)
    body = [_row(exposed, statement, row, MediaLinks(request, services)) for row in rows]
    headers = {"Content-Range": _content_range(query.offset, len(body), total)}
    if single:
        if len(body) != 1:
            raise not_one_row(len(body))
        content: Any = body[0]
        media = f"{OBJECT}; charset=utf-8"
    else:
        content = body
        media = "application/json; charset=utf-8"
    status = 200
    if total is not None:
        if query.offset > total:
            raise RestProblem(
                416,
                "PGRST103",
                "Requested range not satisfiable",
                f"An offset of {query.offset} was requested, but there are only {total} rows.",
                headers={"Content-Range": f"*/{total}"},
            )
        if len(body) < total:
            status = 206
    payload = b"" if request.method == "HEAD" else _dumps(content)
    return Response(payload, status_code=status, media_type=media, headers=headers)


@router.api_route("/{table}", methods=["POST", "PUT", "PATCH", "DELETE"])
async def write(table: str, request: Request) -> Response:
    """Every table here is read-only for every caller."""
    if table not in TABLES:
        raise unknown_table(table)
    raise read_only(table, request.method)


def _wants_object(accept: str | None) -> bool:
    """PostgREST's media negotiation for reads: the object type for `single()`, JSON (or
    anything) for arrays; a client asking only for something else gets 406 PGRST107."""
    if not accept:
        return False
    types = [item.split(";")[0].strip().lower() for item in accept.split(",")]
    if OBJECT in types:
        return True
    if any(t in ("application/json", "*/*", "application/*", "") for t in types):
        return False
    raise RestProblem(406, "PGRST107", f"None of these media types are available: {accept}")


async def _caller(request: Request, reads: Reads, secret: str) -> uuid.UUID | None:
    """The user behind the bearer token; None for the anon key (the token clients send when
    nobody is signed in is the same key as `apikey`)."""
    token = bearer_token(request)
    apikey = request.headers.get("apikey", "")
    if token is None or (apikey and hmac.compare_digest(token.encode(), apikey.encode())):
        return None
    try:
        caller = await resolve_token(reads, secret, token)
    except TokenProblem as problem:
        raise _token_problem(problem) from None
    return caller.user_id


async def _run(
    session: AsyncSession,
    statement: CompiledRead,
    user_id: uuid.UUID | None,
    count_wanted: bool,
    services: GenerationServices,
) -> tuple[list[Any], int | None]:
    """The rows (and the total if asked) under the caller's row-level security."""
    await session.execute(
        text(
            "SELECT set_config('rendio.rest_user', :user_id, true),"
            " set_config('statement_timeout', :timeout, true),"
            " set_config('role', 'rendio_rest', true)"
        ),
        {
            "user_id": str(user_id) if user_id else "",
            "timeout": str(services.settings.rest_statement_timeout_ms),
        },
    )
    try:
        rows = list((await session.execute(statement.rows)).all())
        total: int | None = None
        if count_wanted:
            total = int((await session.execute(statement.count)).scalar_one())
    except DBAPIError as error:
        raise _client_problem(error) from None
    finally:
        await session.rollback()
    return rows, total


def _token_problem(problem: TokenProblem) -> RestProblem:
    """A refused token in PostgREST's terms."""
    if problem.kind == "expired":
        return RestProblem(
            401,
            "PGRST303",
            "JWT expired",
            headers={
                "WWW-Authenticate": 'Bearer error="invalid_token", error_description="JWT expired"'
            },
        )
    if problem.kind == "undecodable":
        return RestProblem(401, "PGRST301", "JWT could not be decoded")
    if problem.kind == "banned":
        return RestProblem(403, "42501", "permission denied: the account is banned")
    return RestProblem(401, "PGRST301", f"JWT rejected: {problem.reason}")


def _client_problem(error: DBAPIError) -> Exception:
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    status = _CLIENT_SQLSTATES.get(sqlstate) or _CLIENT_CLASSES.get(sqlstate[:2])
    if status is None:
        return error
    diag = getattr(error.orig, "diag", None)
    message = getattr(diag, "message_primary", None) or "invalid query"
    return RestProblem(status, sqlstate, message, getattr(diag, "message_detail", None))


def _row(exposed: Exposed, statement: CompiledRead, row: Any, links: MediaLinks) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for item, value in zip(statement.shown, row, strict=True):
        if item.column in exposed.presented:
            value = links(value)
        shown[item.key] = value
    return shown


def _json_default(value: object) -> object:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot show {type(value).__name__}")


def _dumps(content: Any) -> bytes:
    return json.dumps(content, default=_json_default, separators=(",", ":")).encode()


def _content_range(offset: int, shown: int, total: int | None) -> str:
    """PostgREST's `first-last/total`; `*` for an empty range or an uncounted total."""
    first_last = f"{offset}-{offset + shown - 1}" if shown and total != 0 else "*"
    return f"{first_last}/{'*' if total is None else total}"
