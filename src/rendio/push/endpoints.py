"""register-push-token and unregister-push-token."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.platform.db import Session
from rendio.platform.errors import ErrorCode
from rendio.platform.openapi import errors
from rendio.push import service

router = APIRouter(prefix="/functions/v1", tags=["push"])
# APNs device tokens are hex (32 bytes today; Apple says not to assume a length).
_HEX_ID = r"^[0-9a-fA-F]{32,200}$"
_ERRORS = errors(*AUTH_ERRORS, ErrorCode.VALIDATION_FAILED)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    token: str = Field(pattern=_HEX_ID)
    environment: Literal["production", "sandbox"] = "production"


class TokenOut(BaseModel):
    token: str
    registered: bool


@router.post("/register-push-token", response_model=TokenOut, responses=_ERRORS)
async def register_push_token(caller: CurrentUser, session: Session, body: TokenIn) -> TokenOut:
    """This device hears when the caller's videos end (a token moves to the latest account)."""
    await service.register(session, caller.user_id, body.token.lower(), body.environment)
    return TokenOut(token=body.token.lower(), registered=True)


@router.post("/unregister-push-token", response_model=TokenOut, responses=_ERRORS)
async def unregister_push_token(caller: CurrentUser, session: Session, body: TokenIn) -> TokenOut:
    """Stop pushes to this device; unregistering an unknown token is harmless."""
    await service.unregister(session, caller.user_id, body.token.lower())
    return TokenOut(token=body.token.lower(), registered=False)
