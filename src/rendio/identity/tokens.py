"""Access tokens: HS256 JWTs shaped like Supabase Auth's, so its client libraries accept them.

Only HS256 with our secret is ever accepted (`alg: none`, other algorithms and other keys are
refused by PyJWT's algorithm allow-list); `aud` must be "authenticated" and `exp`, `iat`,
`sub` and `session_id` must be present.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
AUDIENCE = "authenticated"
ROLE = "authenticated"
DEFAULT_LIFETIME_SECONDS = 3600
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "aud", "session_id"]


class InvalidToken(Exception):
    """The token is malformed, forged, expired or for someone else."""


class ExpiredToken(InvalidToken):
    """The token was ours and valid, but its time is up (the client should refresh)."""


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    is_anonymous: bool
    expires_at: int


def mint_access_token(
    secret: str,
    *,
    issuer: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    is_anonymous: bool,
    email: str | None = None,
    amr: str = "anonymous",
    lifetime_seconds: int = DEFAULT_LIFETIME_SECONDS,
    now: int | None = None,
) -> tuple[str, int]:
    """Return (token, expires_at) with the claims PROTOCOLS.md lists for Supabase Auth."""
    issued_at = int(time.time()) if now is None else now
    expires_at = issued_at + lifetime_seconds
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": str(user_id),
        "aud": AUDIENCE,
        "exp": expires_at,
        "iat": issued_at,
        "role": ROLE,
        "session_id": str(session_id),
        "is_anonymous": is_anonymous,
        "aal": "aal1",
        "amr": [{"method": amr, "timestamp": issued_at}],
        "email": email or "",
        "phone": "",
        "app_metadata": {"provider": amr},
        "user_metadata": {},
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at


def verify_access_token(secret: str, token: str, *, leeway_seconds: int = 0) -> AccessClaims:
    """Decode and check a token we issued, or raise InvalidToken.

    An app sends the same token with every call for up to an hour, so a token that verified
    is remembered (bounded, most recent first) and only its expiry is checked again: the
    signature cannot change, and a forged or malformed token is never remembered. Whether its
    session still stands is the caller's check, made every time."""
    claims = _verified(secret, token, leeway_seconds)
    if claims.expires_at <= time.time() - leeway_seconds:
        raise ExpiredToken("Signature has expired")
    return claims


@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str, leeway_seconds: int) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            leeway=leeway_seconds,
            options={"require": _REQUIRED_CLAIMS},
        )
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["session_id"]),
            is_anonymous=bool(claims.get("is_anonymous", False)),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError as error:
        raise ExpiredToken(str(error)) from None
    except (jwt.PyJWTError, ValueError, TypeError) as error:
        raise InvalidToken(str(error)) from None
