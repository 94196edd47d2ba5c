"""Identity business endpoints under /functions/v1: device-check and user-profile."""

from __future__ import annotations

from fastapi import APIRouter, Body, Request

from rendio.identity import service
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.identity.schemas import (
    DeviceCheckIn,
    DeviceCheckOut,
    GoTrueSession,
    ProfileOut,
    ProfilePatch,
)
from rendio.identity.services import IdentityDeps
from rendio.identity.sessions import start_session
from rendio.platform.db import Session
from rendio.platform.errors import ErrorCode, Forbidden
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["identity"])
_DEVICE_CHECK_ERRORS = errors(
    ErrorCode.VALIDATION_FAILED,
    ErrorCode.RATE_LIMITED,
    ErrorCode.DEVICE_VERIFICATION_FAILED,
    ErrorCode.PROVIDER_UNAVAILABLE,
    ErrorCode.FORBIDDEN,
    ErrorCode.UNAVAILABLE,
    ErrorCode.DATABASE_ERROR,
)


@router.post("/device-check", response_model=DeviceCheckOut, responses=_DEVICE_CHECK_ERRORS)
@router.post(
    "/device/check",
    response_model=DeviceCheckOut,
    responses=_DEVICE_CHECK_ERRORS,
    include_in_schema=False,
)
async def device_check(
    request: Request, services: IdentityDeps, session: Session, body: DeviceCheckIn
) -> DeviceCheckOut:
    """Verify the device, find or create its guest, grant starter credits once per device."""
    await services.limiter.enforce(request, "device-check")
    found = await service.check_device(
        session,
        services.device_verifier,
        device_id=body.device_id,
        device_token=body.device_token,
        starter_credits=services.settings.starter_credits,
    )
    issued = await start_session(session, services.keys, found.user, amr="anonymous")
    return DeviceCheckOut(
        user_id=found.user.id,
        is_new=found.is_new,
        is_guest=found.user.is_guest,
        credits_remaining=found.user.credits_remaining,
        initial_grant_claimed=found.user.initial_grant_claimed,
        session=GoTrueSession.of(issued),
    )


@router.get("/user-profile", response_model=ProfileOut, responses=errors(*AUTH_ERRORS))
async def get_profile(caller: CurrentUser) -> ProfileOut:
    return ProfileOut.of(caller.user)


@router.patch(
    "/user-profile",
    response_model=ProfileOut,
    responses=errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED),
)
@router.post(
    "/user-profile",
    response_model=ProfileOut,
    responses=errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED),
)
async def update_profile(
    caller: CurrentUser, session: Session, body: ProfilePatch | None = Body(default=None)
) -> ProfileOut:
    """Change `language` and/or `theme_preference`; POST is accepted for `functions.invoke`."""
    patch = body or ProfilePatch()
    if patch.user_id is not None and patch.user_id != caller.user_id:
        raise Forbidden({"reason": "user_id is not the caller"})
    user = await service.update_profile(
        session, caller.user, language=patch.language, theme_preference=patch.theme_preference
    )
    return ProfileOut.of(user)
