"""The one authentication dependency every business endpoint uses, and the `apikey` gate.

A token is accepted only if it verifies (HS256, our secret, unexpired), its session is not
revoked and its user still exists; a banned user is known but refused. The session check is
one primary-key query joined with the user row (which the endpoint needs anyway), made on
every request as a lean read (platform/reads.py): it sees every logout and ban committed
before the request. The user comes back as an ORM `User` attached to the request's session
without another query, so endpoints use and change it as if they had loaded it.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Literal, cast

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from psycopg import sql
from sqlalchemy.orm import make_transient_to_detached

from rendio.identity.gotrue import AuthApiError
from rendio.identity.models import User
from rendio.identity.services import IdentityServices
from rendio.identity.sessions import Keys
from rendio.identity.tokens import ExpiredToken, InvalidToken, verify_access_token
from rendio.platform.db import Session
from rendio.platform.errors import ApiKeyInvalid, ErrorCode, Forbidden, Unauthorized
from rendio.platform.reads import Reads
from rendio.platform.services import services_of

# The OpenAPI security schemes. They only document the headers: the checks below read them
# themselves (and answer in the SPEC envelope or GoTrue's shape, not FastAPI's 403).
BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="The access token of a session (device-check, /auth/v1/signup or /auth/v1/token).",
    auto_error=False,
)
APIKEY = APIKeyHeader(
    name="apikey",
    scheme_name="apikey",
    description="The public (anon) key of the app; required when RENDIO_ANON_KEY is set.",
    auto_error=False,
)
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]
ApiKeyHeader = Annotated[str | None, Security(APIKEY)]
# What `CurrentUser` can answer: no or a bad token, a banned account, its database lookup.
AUTH_ERRORS = (ErrorCode.UNAUTHORIZED, ErrorCode.FORBIDDEN, ErrorCode.DATABASE_ERROR)
# What the `/functions/v1` gate (`require_apikey`) can answer.
APIKEY_ERRORS = (ErrorCode.API_KEY_INVALID,)


@dataclass(frozen=True)
class Caller:
    """The verified user behind a request, and the session their token belongs to."""

    session_id: uuid.UUID
    # When the token runs out (a realtime channel ends then).
    expires_at: int
    # The user's row as the session check read it (column name → value).
    row: Mapping[str, Any]

    @property
    def user_id(self) -> uuid.UUID:
        return cast(uuid.UUID, self.row["id"])

    @cached_property
    def user(self) -> User:
        """The row as an ORM `User`, detached (`add` it to a session to change it). Built on
        first use: ~25 µs, which the endpoints apps poll would spend for nothing."""
        user = User(**{attribute: self.row[column] for attribute, column in _USER_FIELDS})
        make_transient_to_detached(user)  # as if loaded by a query: nothing pending or expired
        return user


def keys(request: Request) -> Keys:
    return services_of(request.app.state, IdentityServices).keys


def reads(request: Request) -> Reads:
    return services_of(request.app.state, IdentityServices).reads


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenProblem(Exception):
    """Why a bearer token was not accepted (`reason` is safe to show); `kind` lets each API
    answer in its own shape (PostgREST tells an expired JWT from an undecodable one)."""

    def __init__(
        self, reason: str, kind: Literal["undecodable", "expired", "revoked", "banned"]
    ) -> None:
        self.reason = reason
        self.kind = kind
        super().__init__(reason)

    @property
    def banned(self) -> bool:
        return self.kind == "banned"


# (attribute, column) of every mapped column of User: the row is read by column name and the
# instance built by attribute name.
_USER_FIELDS = tuple((attr.key, attr.columns[0].name) for attr in User.__mapper__.column_attrs)
# A lean read (platform/reads.py, asyncpg placeholders), composed once into text.
_SESSION_CHECK = (
    sql.SQL(
        "SELECT {columns}, s.revoked_at AS session_revoked_at"
        " FROM auth_sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.id = $1 AND s.user_id = $2"
    )
    .format(columns=sql.SQL(", ").join(sql.Identifier("u", column) for _, column in _USER_FIELDS))
    .as_string()
)


async def resolve_token(reads: Reads, secret: str, token: str) -> Caller:
    """The caller a token stands for, or TokenProblem."""
    try:
        claims = verify_access_token(secret, token)
    except ExpiredToken:
        raise TokenProblem("invalid or expired token", "expired") from None
    except InvalidToken:
        raise TokenProblem("invalid or expired token", "undecodable") from None
    row = await reads.one(_SESSION_CHECK, (claims.session_id, claims.user_id))
    if row is None:
        raise TokenProblem("session revoked", "revoked")
    # A ban revokes the sessions too; the ban is what the client is told (403, not "sign in").
    if row["banned_at"] is not None:
        raise TokenProblem("account banned", "banned")
    if row["session_revoked_at"] is not None:
        raise TokenProblem("session revoked", "revoked")
    return Caller(session_id=claims.session_id, expires_at=claims.expires_at, row=row)


def _remember_user(request: Request, user_id: uuid.UUID) -> None:
    request.scope.setdefault("state", {})["user_id"] = str(user_id)


async def identify(request: Request) -> Caller:
    """401 ERR_4005 for a missing, malformed, forged, expired or revoked token; 403 if banned.

    Called directly by the endpoints apps poll (they ask FastAPI for nothing but the request,
    and open no database session); every other endpoint has it through `CurrentUser`."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized({"reason": "missing bearer token"})
    try:
        caller = await resolve_token(reads(request), keys(request).secret, token)
    except TokenProblem as problem:
        if problem.banned:
            raise Forbidden({"reason": problem.reason}) from None
        raise Unauthorized({"reason": problem.reason}) from None
    _remember_user(request, caller.user_id)
    return caller


async def authenticate(request: Request, session: Session, _: BearerHeader) -> Caller:
    """`identify`, with the user attached to the request's session (without a query) for the
    endpoints that change it."""
    caller = await identify(request)
    session.add(caller.user)
    return caller


CurrentUser = Annotated[Caller, Depends(authenticate)]


async def authenticate_without_session(request: Request, _: BearerHeader) -> Caller:
    """`identify` for an endpoint that opens no database session (generate-video makes its
    one statement as a lean call, platform/reads.py)."""
    return await identify(request)


IdentifiedCaller = Annotated[Caller, Depends(authenticate_without_session)]


async def authenticate_auth_api(request: Request, session: Session, _: BearerHeader) -> Caller:
    """The same check for `/auth/v1`, refused the way GoTrue refuses."""
    token = bearer_token(request)
    if token is None:
        raise AuthApiError(401, "no_authorization", "This endpoint requires a Bearer token")
    try:
        caller = await resolve_token(reads(request), keys(request).secret, token)
    except TokenProblem as problem:
        if problem.banned:
            raise AuthApiError(403, "user_banned", "User is banned") from None
        code = "session_not_found" if problem.kind == "revoked" else "bad_jwt"
        raise AuthApiError(403, code, f"invalid JWT: {problem.reason}") from None
    session.add(caller.user)
    _remember_user(request, caller.user_id)
    return caller


AuthApiCaller = Annotated[Caller, Depends(authenticate_auth_api)]
# What `AuthApiCaller` can answer, as GoTrue errors (status, code).
AUTH_API_ERRORS = (
    (401, "no_authorization"),
    (403, "bad_jwt"),
    (403, "session_not_found"),
    (403, "user_banned"),
)


def _apikey_matches(request: Request) -> bool:
    expected = services_of(request.app.state, IdentityServices).settings.anon_key
    if expected is None:
        return True
    given = request.headers.get("apikey", "")
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def check_apikey(request: Request) -> None:
    """`/functions/v1`: with RENDIO_ANON_KEY set, a request without it is refused with
    ERR_4016, not ERR_4005, so the app does not take a bad build for an expired session."""
    if not _apikey_matches(request):
        raise ApiKeyInvalid({"reason": "missing or wrong apikey"})


async def require_apikey(request: Request, _: ApiKeyHeader) -> None:
    """`check_apikey` as the dependency of the `/functions/v1` routers."""
    check_apikey(request)


# What a route that calls `check_apikey` (and `identify`) itself declares, as the dependencies
# would have.
APIKEY_SECURITY: list[dict[str, list[str]]] = [{APIKEY.scheme_name: []}]
CALLER_SECURITY: list[dict[str, list[str]]] = [{APIKEY.scheme_name: [], BEARER.scheme_name: []}]


async def require_auth_apikey(request: Request, _: ApiKeyHeader) -> None:
    """`/auth/v1`: the same gate, answered in GoTrue's shape."""
    if not _apikey_matches(request):
        raise AuthApiError(401, "no_api_key", "No API key found in request")
