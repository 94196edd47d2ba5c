"""Checking that a webhook comes from the provider, before anything else is done with it.

* fal signs `request id \\n user id \\n timestamp \\n sha256(body)` with Ed25519; its public keys
  are a JWKS (`RENDIO_FAL_JWKS_URL`), kept for a day and fetched again early (at most every
  30 s) when no key verifies, so a key rotation is followed without letting forged deliveries
  make us fetch on every request.
* Replicate and OpenAI-compatible gateways use Standard Webhooks (HMAC-SHA256 with a `whsec_`
  secret, `webhook-id`/`webhook-timestamp`/`webhook-signature`), checked with the
  `standardwebhooks` library. Replicate's secret is fetched from its API when it is not set.

Every check refuses a timestamp more than 300 s away, so a captured delivery cannot be
replayed later; a replay within the window is caught by the delivery id (`deliveries.py`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

log = structlog.get_logger(__name__)

TOLERANCE_SECONDS = 300
_KEYS_LIFETIME = 24 * 3600
_REFETCH_AT_MOST_EVERY = 30.0


class Forged(Exception):
    """The delivery is not signed by the provider, or not now (the reason is safe to show)."""


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _parse_jwks(body: Any) -> list[Ed25519PublicKey]:
    keys = []
    for key in body.get("keys", []) if isinstance(body, dict) else []:
        if isinstance(key, dict) and key.get("kty") == "OKP" and key.get("crv") == "Ed25519":
            try:
                keys.append(Ed25519PublicKey.from_public_bytes(_b64url(str(key.get("x", "")))))
            except (ValueError, binascii.Error):
                continue
    return keys


class FalKeys:
    """fal's webhook public keys, fetched lazily and cached."""

    def __init__(self, jwks_url: str) -> None:
        self._url = jwks_url
        self._keys: list[Ed25519PublicKey] = []
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, *, early: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < (_REFETCH_AT_MOST_EVERY if early else _KEYS_LIFETIME):
                return
            self._fetched_at = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = await client.get(self._url)
                    answer.raise_for_status()
                    keys = _parse_jwks(answer.json())
            except (httpx.HTTPError, ValueError) as error:
                log.warning("fal_jwks_unavailable", error=repr(error))
                return
            if keys:
                self._keys = keys

    async def verify(self, message: bytes, signature: bytes) -> bool:
        await self._refresh(early=False)
        if _any_verifies(self._keys, message, signature):
            return True
        await self._refresh(early=True)
        return _any_verifies(self._keys, message, signature)


def _any_verifies(keys: list[Ed25519PublicKey], message: bytes, signature: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
            return True
        except InvalidSignature:
            continue
    return False


_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")


def _fresh(timestamp: str) -> None:
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not _UNIX_SECONDS.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > (
        TOLERANCE_SECONDS
    ):
        raise Forged("timestamp missing or more than 300 s away")


async def verify_fal(keys: FalKeys, headers: Mapping[str, str], body: bytes) -> str:
    """The delivery's request id if fal signed `body` now; else Forged."""
    request_id = headers.get("x-fal-webhook-request-id", "")
    user_id = headers.get("x-fal-webhook-user-id", "")
    timestamp = headers.get("x-fal-webhook-timestamp", "")
    if not (request_id and user_id and timestamp):
        raise Forged("signature headers missing")
    _fresh(timestamp)
    try:
        signature = bytes.fromhex(headers.get("x-fal-webhook-signature", ""))
    except ValueError:
        raise Forged("signature is not hex") from None
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()])
    if not await keys.verify(message.encode(), signature):
        raise Forged("signature does not verify")
    return request_id


SecretSource = Callable[[], Awaitable[str | None]]


class StandardWebhooks:
    """A Standard Webhooks verifier whose secret is given or fetched (once, and again at most
    every 30 s after a failure, in case it was rotated)."""

    def __init__(self, secret: str | None, fetch: SecretSource | None = None) -> None:
        self._secret = secret
        self._fetch = fetch
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        if self._fetch is None:
            return
        async with self._lock:
            if time.monotonic() - self._fetched_at < _REFETCH_AT_MOST_EVERY:
                return
            self._fetched_at = time.monotonic()
            fetched = await self._fetch()
            if fetched:
                self._secret = fetched

    def _check(self, headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
        if not self._secret:
            return None
        try:
            parsed = Webhook(self._secret).verify(body, dict(headers))
        except (WebhookVerificationError, ValueError):
            # The library raises ValueError (and UnicodeDecodeError) on a malformed signature
            # header or a body that is not UTF-8: a stranger's input, refused like any forgery.
            return None
        return parsed if isinstance(parsed, dict) else None

    async def verify(self, headers: Mapping[str, str], body: bytes) -> tuple[str, dict[str, Any]]:
        """(delivery id, payload) if signed with the secret now; else Forged."""
        if not headers.get("webhook-id"):
            raise Forged("signature headers missing")
        _fresh(headers.get("webhook-timestamp", ""))
        if self._secret is None:
            await self._refresh()
        payload = self._check(headers, body)
        if payload is None and self._fetch is not None:
            await self._refresh()
            payload = self._check(headers, body)
        if payload is None:
            raise Forged("signature does not verify")
        return headers["webhook-id"], payload


def parse_json(body: bytes) -> dict[str, Any]:
    """A verified body as a JSON object (Forged if it is not one: a signed body is the
    provider's, so this is a protocol error either way)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        raise Forged("body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Forged("body is not a JSON object")
    return parsed
