"""A local stand-in for Apple's servers, over real HTTP: Sign in with Apple's key set and the
DeviceCheck API (`query_two_bits`, `update_two_bits`) with its plain-text answers.

DeviceCheck tokens are ephemeral in reality (a new one per call for the same device); here a
token is `<device name>.<anything>`, so tests can present fresh tokens for one device.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

APPLE_ISSUER = "https://appleid.apple.com"
TEAM_ID = "TEAM123456"
DEVICECHECK_KEY_ID = "DCKEY12345"


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FakeApple:
    """State the tests arrange and inspect; the HTTP app reads it on every request."""

    signing_keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    devicecheck_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    bits: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[int | str] = field(default_factory=list)
    update_faults: list[int | str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    jwks_down: bool = False
    jwks_fetches: int = 0
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    url: str = ""

    def reset(self) -> None:
        self.signing_keys = {"apple-key-1": new_rsa_key()}
        self.bits.clear()
        self.faults.clear()
        self.update_faults.clear()
        self.authorizations.clear()
        self.jwks_down = False
        self.jwks_fetches = 0
        self.requests.clear()

    # --- helpers for tests -------------------------------------------------------------
    def devicecheck_private_pem(self) -> str:
        return self.devicecheck_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def id_token(
        self,
        sub: str,
        *,
        audience: str = "com.rendio.app",
        nonce_hash: str | None = None,
        email: str | None = "person@privaterelay.appleid.com",
        kid: str = "apple-key-1",
        key: rsa.RSAPrivateKey | None = None,
        issuer: str = APPLE_ISSUER,
        expires_in: int = 600,
        algorithm: str = "RS256",
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": sub,
            "iat": now,
            "exp": now + expires_in,
            "email_verified": "true",
            "is_private_email": "true",
        }
        if email is not None:
            claims["email"] = email
        if nonce_hash is not None:
            claims["nonce"] = nonce_hash
        signer = key or self.signing_keys[kid]
        return jwt.encode(claims, signer, algorithm=algorithm, headers={"kid": kid})

    # --- HTTP ---------------------------------------------------------------------------
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/auth/keys", self._keys, methods=["GET"]),
                Route("/v1/query_two_bits", self._query, methods=["POST"]),
                Route("/v1/update_two_bits", self._update, methods=["POST"]),
            ]
        )

    async def _keys(self, request: Request) -> Response:
        self.jwks_fetches += 1
        if self.jwks_down:
            return PlainTextResponse("unavailable", status_code=503)
        keys = []
        for kid, private in self.signing_keys.items():
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": keys})

    async def _fault(self, faults: list[int | str]) -> Response | None:
        if not faults:
            return None
        fault = faults.pop(0)
        if fault == "timeout":
            await asyncio.sleep(3)
            return PlainTextResponse("late", status_code=200)
        return PlainTextResponse("Internal Server Error", status_code=int(fault))

    async def _checked(
        self, request: Request, faults: list[int | str]
    ) -> tuple[dict[str, Any] | None, Response | None]:
        """Apple's own checks: our ES256 JWT, then a well-formed body and device token."""
        fault = await self._fault(faults)
        if fault is not None:
            return None, fault
        authorization = request.headers.get("authorization", "")
        self.authorizations.append(authorization)
        try:
            header = jwt.get_unverified_header(authorization.removeprefix("Bearer "))
            claims = jwt.decode(
                authorization.removeprefix("Bearer "),
                self.devicecheck_key.public_key(),
                algorithms=["ES256"],
            )
        except jwt.PyJWTError:
            return None, PlainTextResponse("Unable to verify authorization token", 401)
        if header.get("kid") != DEVICECHECK_KEY_ID or claims.get("iss") != TEAM_ID:
            return None, PlainTextResponse("Unable to verify authorization token", 401)
        body = await request.json()
        self.requests.append((request.url.path, body))
        token = body.get("device_token")
        if (
            not isinstance(token, str)
            or "." not in token
            or not body.get("transaction_id")
            or not isinstance(body.get("timestamp"), int)
        ):
            return None, PlainTextResponse(
                "Missing or incorrectly formatted device token payload", 400
            )
        return body, None

    async def _query(self, request: Request) -> Response:
        body, refusal = await self._checked(request, self.faults)
        if refusal is not None:
            return refusal
        assert body is not None
        state = self.bits.get(body["device_token"].split(".", 1)[0])
        if state is None:
            return PlainTextResponse("Failed to find bit state", 200)
        return JSONResponse(state)

    async def _update(self, request: Request) -> Response:
        body, refusal = await self._checked(request, self.update_faults or self.faults)
        if refusal is not None:
            return refusal
        assert body is not None
        device = body["device_token"].split(".", 1)[0]
        self.bits[device] = {
            "bit0": bool(body.get("bit0")),
            "bit1": bool(body.get("bit1")),
            "last_update_time": time.strftime("%Y-%m"),
        }
        return Response(status_code=200)


class ServedApp:
    """Runs an ASGI app on a real port in a background thread."""

    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
