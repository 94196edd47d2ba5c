"""Request and response shapes of the identity endpoints.

`GoTrueUser` and `GoTrueSession` copy what the Supabase client libraries require (see
docs/notes/supabase-client-wire.md): a session without `expires_in`, or a user without `aud`,
`app_metadata`, `user_metadata` or `created_at`, fails to parse in supabase-py.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rendio.identity.models import User
from rendio.identity.sessions import IssuedSession

Language = Literal["en", "tr", "es"]
Theme = Literal["system", "light", "dark"]


class GoTrueUser(BaseModel):
    id: str
    aud: str = "authenticated"
    role: str = "authenticated"
    email: str
    phone: str = ""
    app_metadata: dict[str, Any]
    user_metadata: dict[str, Any] = Field(default_factory=dict)
    identities: list[dict[str, Any]] = Field(default_factory=list)
    is_anonymous: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> GoTrueUser:
        provider = "anonymous" if user.is_guest else "apple"
        return cls(
            id=str(user.id),
            email=user.email or "",
            app_metadata={"provider": provider, "providers": [provider]},
            user_metadata=dict(user.user_metadata),
            is_anonymous=user.is_guest,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class GoTrueSession(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 (the OAuth token type, not a secret)
    expires_in: int
    expires_at: int
    refresh_token: str
    user: GoTrueUser

    @classmethod
    def of(cls, issued: IssuedSession) -> GoTrueSession:
        return cls(
            access_token=issued.access_token,
            expires_in=issued.expires_in,
            expires_at=issued.expires_at,
            refresh_token=issued.refresh_token,
            user=GoTrueUser.of(issued.user),
        )


class _Lenient(BaseModel):
    """Auth request bodies: clients send extra fields (`gotrue_meta_security`, …) and nulls."""

    model_config = ConfigDict(extra="ignore")


class SignupIn(_Lenient):
    email: str | None = None
    phone: str | None = None
    password: str | None = None
    data: dict[str, Any] | None = None


class UserUpdateIn(_Lenient):
    """`PUT /auth/v1/user` (supabase `updateUser`); `nonce`, `code_challenge`… are ignored."""

    email: str | None = None
    phone: str | None = None
    password: str | None = None
    data: dict[str, Any] | None = None
    app_metadata: dict[str, Any] | None = None


class RefreshIn(_Lenient):
    refresh_token: str = Field(min_length=1, max_length=512)


class IdTokenIn(_Lenient):
    provider: str = Field(min_length=1, max_length=64)
    id_token: str = Field(min_length=1, max_length=16_384)
    nonce: str | None = Field(default=None, max_length=1024)
    access_token: str | None = None


class DeviceCheckIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    device_id: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
    device_token: str = Field(min_length=1, max_length=16_384)


class DeviceCheckOut(BaseModel):
    user_id: uuid.UUID
    is_new: bool
    is_guest: bool
    credits_remaining: int
    initial_grant_claimed: bool
    session: GoTrueSession


class ProfileOut(BaseModel):
    user_id: uuid.UUID
    email: str | None
    is_guest: bool
    tier: str
    language: Language
    theme_preference: Theme
    credits_remaining: int
    credits_total: int
    initial_grant_claimed: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> ProfileOut:
        return cls(
            user_id=user.id,
            email=user.email,
            is_guest=user.is_guest,
            tier=user.tier,
            language=user.language,
            theme_preference=user.theme_preference,
            credits_remaining=user.credits_remaining,
            credits_total=user.credits_total,
            initial_grant_claimed=user.initial_grant_claimed,
            created_at=user.created_at,
        )


class ProfilePatch(BaseModel):
    """Only these two are writable; anything else (credits, tier, email, …) is refused."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID | None = Field(
        default=None, description="Ignored when it is the caller's id; refused otherwise."
    )
    language: Language | None = None
    theme_preference: Theme | None = None


class AccountDeleted(BaseModel):
    user_id: uuid.UUID
    deleted: bool = True
