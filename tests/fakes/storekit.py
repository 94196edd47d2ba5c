"""A test App Store: its own root → intermediate → leaf chain (ES256, with the marker extensions
Apple's library checks) signing StoreKit 2 transactions and Server Notifications V2."""

from __future__ import annotations

import base64
import datetime
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

BUNDLE_ID = "com.rendio.app"
APP_APPLE_ID = 1234567890
LEAF_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_MARKER = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
_DER_NULL = b"\x05\x00"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    marker: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if marker is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(marker, _DER_NULL), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


class TestAppStore:
    """Signs what the App Store signs, with a chain the tests trust (or not)."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = _certificate(
            "Test Root CA", self.root_key, "Test Root CA", self.root_key, ca=True, marker=None
        )
        self.intermediate_key = ec.generate_private_key(ec.SECP256R1())
        self.intermediate = _certificate(
            "Test WWDR",
            self.intermediate_key,
            "Test Root CA",
            self.root_key,
            ca=True,
            marker=INTERMEDIATE_MARKER,
        )
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = _certificate(
            "Test StoreKit Signer",
            self.leaf_key,
            "Test WWDR",
            self.intermediate_key,
            ca=False,
            marker=LEAF_MARKER,
        )

    def write_root(self, path: Path) -> Path:
        path.write_bytes(self.root.public_bytes(serialization.Encoding.DER))
        return path

    def sign(self, payload: dict[str, Any]) -> str:
        chain = [
            base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
            for cert in (self.leaf, self.intermediate, self.root)
        ]
        return jwt.encode(payload, self.leaf_key, algorithm="ES256", headers={"x5c": chain})

    def transaction(
        self,
        *,
        transaction_id: str | None = None,
        product_id: str = "com.rendio.credits.10",
        environment: str = "Sandbox",
        bundle_id: str = BUNDLE_ID,
        quantity: int = 1,
        kind: str = "Consumable",
        revoked: bool = False,
    ) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        tid = transaction_id or str(uuid.uuid4().int)[:16]
        payload: dict[str, Any] = {
            "transactionId": tid,
            "originalTransactionId": tid,
            "bundleId": bundle_id,
            "productId": product_id,
            "purchaseDate": now_ms - 1000,
            "originalPurchaseDate": now_ms - 1000,
            "quantity": quantity,
            "type": kind,
            "inAppOwnershipType": "PURCHASED",
            "signedDate": now_ms,
            "environment": environment,
            "transactionReason": "PURCHASE",
            "storefront": "USA",
            "storefrontId": "143441",
            "price": 990,
            "currency": "USD",
        }
        if revoked:
            payload["revocationDate"] = now_ms
            payload["revocationReason"] = 0
        return payload

    def notification(
        self,
        notification_type: str,
        signed_transaction: str | None = None,
        *,
        environment: str = "Sandbox",
        bundle_id: str = BUNDLE_ID,
        notification_uuid: str | None = None,
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "appAppleId": APP_APPLE_ID,
            "bundleId": bundle_id,
            "bundleVersion": "1",
            "environment": environment,
        }
        if signed_transaction is not None:
            data["signedTransactionInfo"] = signed_transaction
        return {
            "notificationType": notification_type,
            "notificationUUID": notification_uuid or str(uuid.uuid4()),
            "data": data,
            "version": "2.0",
            "signedDate": int(time.time() * 1000),
        }
