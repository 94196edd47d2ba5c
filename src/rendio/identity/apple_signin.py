"""Sign in with Apple ID tokens: RS256 against Apple's published keys.

PyJWT's `PyJWKClient` fetches and caches the key set; a token whose `kid` is not in the cached
set makes it fetch the set again (at most once per cooldown, so a flood of made-up key ids
cannot turn us into a flood of requests to Apple), which is how Apple's key rotation is picked
up. It is a blocking client, so fetches run in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

APPLE_ISSUER = "https://appleid.apple.com"
_KEY_SET_CACHE_SECONDS = 3600
_FETCH_TIMEOUT_SECONDS = 5
_REFETCH_COOLDOWN_SECONDS = 30


class InvalidIdToken(Exception):
    """The ID token is forged, expired, for another app, or its nonce does not match."""


class KeysUnavailable(Exception):
    """Apple's key set could not be fetched."""


@dataclass(frozen=True)
class AppleIdentity:
    sub: str
    email: str | None


class AppleIdTokenVerifier:
    def __init__(
        self,
        client_ids: Sequence[str],
        jwks_url: str,
        *,
        refetch_cooldown_seconds: float = _REFETCH_COOLDOWN_SECONDS,
    ) -> None:
        self.client_ids = list(client_ids)
        self._keys = jwt.PyJWKClient(
            jwks_url,
            cache_jwk_set=True,
            lifespan=_KEY_SET_CACHE_SECONDS,
            timeout=_FETCH_TIMEOUT_SECONDS,
            cooldown_duration=refetch_cooldown_seconds,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.client_ids)

    async def verify(self, id_token: str, raw_nonce: str | None) -> AppleIdentity:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise InvalidIdToken("malformed token") from None
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str):
            raise InvalidIdToken("token must be RS256 with a key id")
        try:
            signing_key = await asyncio.to_thread(self._keys.get_signing_key, header["kid"])
        except jwt.PyJWKClientConnectionError:
            raise KeysUnavailable from None
        except jwt.PyJWKClientError:
            raise InvalidIdToken("unknown signing key") from None
        try:
            claims = jwt.decode(
                id_token,
                signing_key.key,
                algorithms=["RS256"],
                audience=self.client_ids,
                issuer=APPLE_ISSUER,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise InvalidIdToken(str(error)) from None
        _check_nonce(claims.get("nonce"), raw_nonce)
        email = claims.get("email")
        return AppleIdentity(
            sub=str(claims["sub"]), email=email if isinstance(email, str) else None
        )


def _check_nonce(claimed: object, raw_nonce: str | None) -> None:
    """GoTrue's rule: the token carries hex(sha256(raw nonce)); both sides or neither."""
    if not claimed and not raw_nonce:
        return
    if not claimed or not raw_nonce:
        raise InvalidIdToken("nonce must be given both in the request and in the token, or neither")
    expected = hashlib.sha256(raw_nonce.encode()).hexdigest()
    if not hmac.compare_digest(str(claimed).encode(), expected.encode()):
        raise InvalidIdToken("nonce mismatch")
