"""The Supabase Auth (GoTrue) subset under /auth/v1 that the Supabase client libraries call.

Request and response shapes follow GoTrue so that supabase-py and supabase-swift work
unchanged; errors use GoTrue's body (`code`, `error_code`, `msg`, `message`).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Body, Query, Request, Response

from rendio.identity import service
from rendio.identity.apple_signin import InvalidIdToken, KeysUnavailable
from rendio.identity.dependencies import (
    AUTH_API_ERRORS,
    AuthApiCaller,
    TokenProblem,
    bearer_token,
    resolve_token,
)
from rendio.identity.gotrue import AuthApiError, auth_errors, parse
from rendio.identity.models import User
from rendio.identity.schemas import (
    GoTrueSession,
    GoTrueUser,
    IdTokenIn,
    RefreshIn,
    SignupIn,
    UserUpdateIn,
)
from rendio.identity.services import IdentityDeps, IdentityServices
from rendio.identity.sessions import (
    RefreshTokenReused,
    refresh_session,
    revoke_sessions,
    start_session,
)
from rendio.platform.db import Session
from rendio.platform.openapi import request_body

router = APIRouter(prefix="/auth/v1", tags=["auth"])


@router.post(
    "/signup",
    response_model=GoTrueSession,
    responses=auth_errors((422, "email_provider_disabled")),
    openapi_extra=request_body(SignupIn),
)
async def signup(
    request: Request,
    services: IdentityDeps,
    session: Session,
    body: dict[str, Any] | None = Body(default=None),
) -> GoTrueSession:
    """Anonymous sign-in (no email, no phone), keeping `data` as the user's metadata. Email
    and phone sign-up are not offered."""
    await services.limiter.enforce(request, "signup")
    form = parse(SignupIn, body)
    if form.email or form.phone or form.password:
        raise AuthApiError(
            422,
            "email_provider_disabled",
            "Only anonymous sign-up is offered; use Sign in with Apple to register",
        )
    user = await service.create_anonymous_user(session, form.data)
    issued = await start_session(session, services.keys, user, amr="anonymous")
    return GoTrueSession.of(issued)


@router.post(
    "/token",
    response_model=GoTrueSession,
    responses=auth_errors(
        (400, "unsupported_grant_type"),
        (400, "refresh_token_not_found"),
        (400, "refresh_token_already_used"),
        (400, "session_not_found"),
        (400, "user_banned"),
        (400, "provider_disabled"),
        (400, "bad_oidc_token"),
        (503, "unexpected_failure"),
    ),
    openapi_extra=request_body(
        RefreshIn,
        IdTokenIn,
        description="`RefreshIn` with `grant_type=refresh_token`, `IdTokenIn` with "
        "`grant_type=id_token` (Sign in with Apple; send a guest's bearer token to upgrade "
        "or merge that guest).",
    ),
)
async def token(
    request: Request,
    services: IdentityDeps,
    session: Session,
    grant_type: str = Query(default=""),
    body: dict[str, Any] | None = Body(default=None),
) -> GoTrueSession:
    """`grant_type=refresh_token` rotates a refresh token; `grant_type=id_token` signs in
    with Apple (upgrading or merging the guest whose bearer token comes with it)."""
    await services.limiter.enforce(request, "token")
    if grant_type == "refresh_token":
        form = parse(RefreshIn, body)
        try:
            issued = await refresh_session(session, services.keys, form.refresh_token)
        except RefreshTokenReused:
            # The revocation must outlive this failing request: commit it now.
            await session.commit()
            raise AuthApiError(
                400, "refresh_token_already_used", "Invalid Refresh Token: Already Used"
            ) from None
        return GoTrueSession.of(issued)
    if grant_type == "id_token":
        return await _sign_in_with_id_token(request, services, session, parse(IdTokenIn, body))
    raise AuthApiError(
        400, "unsupported_grant_type", "grant_type must be refresh_token or id_token"
    )


async def _sign_in_with_id_token(
    request: Request, services: IdentityServices, session: Session, form: IdTokenIn
) -> GoTrueSession:
    verifier = services.apple_id_verifier
    if form.provider != "apple" or not verifier.enabled:
        raise AuthApiError(
            400, "provider_disabled", f"Sign-in with provider {form.provider!r} is not enabled"
        )
    try:
        identity = await verifier.verify(form.id_token, form.nonce)
    except InvalidIdToken as error:
        raise AuthApiError(400, "bad_oidc_token", f"Invalid ID token: {error}") from None
    except KeysUnavailable:
        raise AuthApiError(
            503, "unexpected_failure", "Apple's signing keys are unreachable; try again"
        ) from None
    guest = await _calling_guest(request, services, session)
    user = await service.sign_in_with_apple(session, identity, guest, services.merge_guest)
    issued = await start_session(session, services.keys, user, amr="oauth")
    return GoTrueSession.of(issued)


async def _calling_guest(
    request: Request, services: IdentityServices, session: Session
) -> User | None:
    """The guest whose current access token accompanies the sign-in, if any.

    Anything else in `Authorization` (the anon key, a registered user's token, an expired
    token) means a plain sign-in; a banned guest is refused rather than laundered.
    """
    token = bearer_token(request)
    if token is None:
        return None
    try:
        caller = await resolve_token(services.reads, services.keys.secret, token)
    except TokenProblem as problem:
        if problem.banned:
            raise AuthApiError(400, "user_banned", "User is banned") from None
        return None
    if not caller.user.is_guest:
        return None
    session.add(caller.user)  # the merge changes it in this transaction
    return caller.user


@router.get("/user", response_model=GoTrueUser, responses=auth_errors(*AUTH_API_ERRORS))
async def get_user(caller: AuthApiCaller) -> GoTrueUser:
    return GoTrueUser.of(caller.user)


@router.put(
    "/user",
    response_model=GoTrueUser,
    responses=auth_errors(
        *AUTH_API_ERRORS,
        (403, "not_admin"),
        (404, "user_not_found"),
        (422, "email_provider_disabled"),
        (422, "phone_provider_disabled"),
    ),
    openapi_extra=request_body(UserUpdateIn),
)
async def update_user(
    caller: AuthApiCaller,
    session: Session,
    body: dict[str, Any] | None = Body(default=None),
) -> GoTrueUser:
    """supabase `updateUser`: `data` merges into `user_metadata` (a null value removes its
    key); email, phone, password and `app_metadata` changes are refused in GoTrue's shape."""
    form = parse(UserUpdateIn, body)
    user = await service.update_user(
        session,
        caller.user,
        email=form.email,
        phone=form.phone,
        password=form.password,
        app_metadata=form.app_metadata,
        data=form.data,
    )
    return GoTrueUser.of(user)


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    responses=auth_errors(*AUTH_API_ERRORS),
)
async def logout(
    caller: AuthApiCaller,
    session: Session,
    scope: Literal["global", "local", "others"] = Query(default="global"),
) -> Response:
    """`local` ends this session, `others` every other one, `global` all of them."""
    if scope == "local":
        await revoke_sessions(session, session_ids=[caller.session_id])
    elif scope == "others":
        await revoke_sessions(session, user_id=caller.user_id, keep=caller.session_id)
    else:
        await revoke_sessions(session, user_id=caller.user_id)
    return Response(status_code=204)
