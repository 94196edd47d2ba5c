"""Device verification: is this a real device, and has it already had its starter credits?

Two verifiers behind one interface. `AppleDeviceCheck` asks Apple's DeviceCheck service, whose
two bits per device survive app reinstalls (bit0 = starter credits claimed). `TrustVerifier`
(dev only) trusts the token string as the device's identity and keeps the bits in the database,
in the request's transaction, so its grant and its bit are atomic.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
import stamina
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.config import Settings, SettingsError
from rendio.platform.errors import DeviceVerificationFailed, ProviderUnavailable

log = structlog.get_logger("rendio.devicecheck")

PRODUCTION_URL = "https://api.devicecheck.apple.com"
DEVELOPMENT_URL = "https://api.development.devicecheck.apple.com"
BIT_STATE_NOT_FOUND = "Failed to find bit state"
# Apple accepts an authorization JWT for up to an hour; renew well before that.
_JWT_REUSE_SECONDS = 20 * 60


_NEW_BITS = text("INSERT INTO device_bits (device_key) VALUES (:key) ON CONFLICT DO NOTHING")
_LOCK_BITS = text("SELECT bit0, bit1 FROM device_bits WHERE device_key = :key FOR UPDATE")
_SET_BITS = text(
    "UPDATE device_bits SET bit0 = true, bit1 = :bit1, updated_at = now() WHERE device_key = :key"
)


@dataclass(frozen=True)
class Bits:
    bit0: bool = False
    bit1: bool = False


class DeviceVerifier(Protocol):
    # True when the bits live in our transaction (their row lock serializes one device).
    transactional: bool

    async def read(self, session: AsyncSession, device_token: str) -> Bits:
        """Verify the token and return the device's bits (both false if never set)."""
        ...

    async def mark_claimed(self, session: AsyncSession, device_token: str, bits: Bits) -> None:
        """Set bit0 (starter credits claimed), keeping bit1."""
        ...

    async def aclose(self) -> None: ...


class TrustVerifier:
    """Dev only: the token string stands in for the physical device."""

    transactional = True

    async def read(self, session: AsyncSession, device_token: str) -> Bits:
        key = hashlib.sha256(device_token.encode()).hexdigest()
        await session.execute(
            _NEW_BITS,
            {"key": key},
        )
        # The row lock serializes every check of one device until the transaction ends.
        row = (
            await session.execute(
                _LOCK_BITS,
                {"key": key},
            )
        ).one()
        return Bits(bit0=row.bit0, bit1=row.bit1)

    async def mark_claimed(self, session: AsyncSession, device_token: str, bits: Bits) -> None:
        await session.execute(
            _SET_BITS,
            {"key": hashlib.sha256(device_token.encode()).hexdigest(), "bit1": bits.bit1},
        )

    async def aclose(self) -> None:
        return None


class _Retryable(Exception):
    """A timeout, a network error, a 429 or a 5xx from Apple: worth another try."""


class AppleDeviceCheck:
    """Apple's DeviceCheck HTTP API with an ES256 bearer JWT (team id, key id, .p8 key)."""

    transactional = False

    def __init__(
        self,
        *,
        team_id: str,
        key_id: str,
        private_key: str,
        base_url: str,
        timeout: float,
        attempts: int,
    ) -> None:
        self._team_id = team_id
        self._key_id = key_id
        self._private_key = private_key
        self._attempts = attempts
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self._jwt: tuple[str, float] | None = None

    def _authorization(self) -> str:
        now = time.time()
        if self._jwt is None or now - self._jwt[1] > _JWT_REUSE_SECONDS:
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._private_key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._jwt = (token, now)
        return f"Bearer {self._jwt[0]}"

    async def read(self, session: AsyncSession, device_token: str) -> Bits:
        response = await self._call("/v1/query_two_bits", {"device_token": device_token})
        if response.text.strip() == BIT_STATE_NOT_FOUND:
            return Bits()
        try:
            state = response.json()
            return Bits(bit0=bool(state.get("bit0")), bit1=bool(state.get("bit1")))
        except (ValueError, AttributeError):
            log.error("devicecheck_unreadable_answer", body=response.text[:200])
            raise ProviderUnavailable({"service": "devicecheck"}) from None

    async def mark_claimed(self, session: AsyncSession, device_token: str, bits: Bits) -> None:
        await self._call(
            "/v1/update_two_bits",
            {"device_token": device_token, "bit0": True, "bit1": bits.bit1},
        )

    async def _call(self, path: str, fields: dict[str, Any]) -> httpx.Response:
        try:
            async for attempt in stamina.retry_context(
                on=_Retryable, attempts=self._attempts, wait_initial=0.2, wait_max=2.0
            ):
                with attempt:
                    return await self._post_once(path, fields)
        except _Retryable as error:
            log.warning("devicecheck_unavailable", path=path, reason=str(error))
            raise ProviderUnavailable({"service": "devicecheck"}) from None
        raise AssertionError("unreachable: stamina either returns or raises")

    async def _post_once(self, path: str, fields: dict[str, Any]) -> httpx.Response:
        body = {
            **fields,
            "transaction_id": str(uuid.uuid4()),
            "timestamp": int(time.time() * 1000),
        }
        try:
            response = await self._http.post(
                path, json=body, headers={"Authorization": self._authorization()}
            )
        except httpx.TransportError as error:
            raise _Retryable(type(error).__name__) from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}")
        if status in (401, 403):
            # Apple refused *our* credentials: an operator problem, not the device's fault.
            log.error("devicecheck_credentials_refused", status=status, body=response.text[:200])
            raise ProviderUnavailable({"service": "devicecheck"})
        if status >= 400:
            raise DeviceVerificationFailed({"reason": response.text.strip()[:200]})
        return response

    async def aclose(self) -> None:
        await self._http.aclose()


def build_device_verifier(settings: Settings) -> DeviceVerifier:
    if settings.device_verifier == "trust":
        return TrustVerifier()
    production = settings.devicecheck_environment == "production"
    default_url = PRODUCTION_URL if production else DEVELOPMENT_URL
    private_key = settings.devicecheck_private_key
    if not (settings.apple_team_id and settings.devicecheck_key_id and private_key):
        raise SettingsError("RENDIO_DEVICE_VERIFIER=apple needs the DeviceCheck key settings")
    return AppleDeviceCheck(
        team_id=settings.apple_team_id,
        key_id=settings.devicecheck_key_id,
        private_key=private_key.get_secret_value(),
        base_url=settings.devicecheck_url or default_url,
        timeout=settings.devicecheck_timeout,
        attempts=settings.devicecheck_attempts,
    )
