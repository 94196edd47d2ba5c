"""Verifying App Store signed data with Apple's own `app-store-server-library`.

One `SignedDataVerifier` per accepted environment (Apple's guidance: a production server also
accepts Sandbox transactions, which is what App Review buys with). Verification may
call Apple's OCSP responders (online checks) with a blocking HTTP client, so it runs in a
worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from appstoreserverlibrary.models.Environment import Environment
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.models.ResponseBodyV2DecodedPayload import (
    ResponseBodyV2DecodedPayload,
)
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from rendio.config import Settings, SettingsError

Decoded = TypeVar("Decoded")


class Unverifiable(Exception):
    """The signed data is not from Apple for this app and environment; `reason` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _der(path: Path) -> bytes:
    """A certificate file as DER (Apple publishes DER `.cer` files; PEM is accepted too)."""
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


class AppStoreVerifier:
    def __init__(self, verifiers: list[SignedDataVerifier]) -> None:
        self._verifiers = verifiers

    @property
    def enabled(self) -> bool:
        return bool(self._verifiers)

    async def transaction(self, signed: str) -> JWSTransactionDecodedPayload:
        return await self._verify(lambda v: v.verify_and_decode_signed_transaction(signed))

    async def notification(self, signed: str) -> ResponseBodyV2DecodedPayload:
        return await self._verify(lambda v: v.verify_and_decode_notification(signed))

    async def _verify(self, decode: Callable[[SignedDataVerifier], Decoded]) -> Decoded:
        if not self._verifiers:
            raise Unverifiable("purchases are not configured")
        return await asyncio.to_thread(self._first_accepting, decode)

    def _first_accepting(self, decode: Callable[[SignedDataVerifier], Decoded]) -> Decoded:
        """Each verifier checks the environment it was built for after verifying, so trying
        them all accepts a payload only where it belongs; the most telling refusal is kept."""
        statuses: list[VerificationStatus] = []
        for verifier in self._verifiers:
            try:
                return decode(verifier)
            except VerificationException as error:
                statuses.append(error.status)
            except (ValueError, TypeError, KeyError, ExceptionGroup):
                # The library's structuring (cattrs, whose validation errors are exception
                # groups) of a payload that verified but is malformed.
                statuses.append(VerificationStatus.VERIFICATION_FAILURE)
        telling = [s for s in statuses if s != VerificationStatus.INVALID_ENVIRONMENT]
        raise Unverifiable((telling or statuses)[0].name.lower())


def build_appstore_verifier(settings: Settings) -> AppStoreVerifier:
    """Verifiers for the configured environments, or none when no bundle id is set."""
    if not settings.appstore_bundle_id:
        return AppStoreVerifier([])
    try:
        roots = [_der(path) for path in settings.appstore_root_certificates]
    except (OSError, ValueError) as error:
        raise SettingsError(f"RENDIO_APPSTORE_ROOT_CERTIFICATES: {error}") from None
    return AppStoreVerifier(
        [
            SignedDataVerifier(
                roots,
                settings.appstore_online_checks,
                Environment(name),
                settings.appstore_bundle_id,
                settings.appstore_app_apple_id,
            )
            for name in settings.appstore_environments
        ]
    )
