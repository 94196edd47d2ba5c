"""A fake Apple Push Notification service speaking HTTP/2 (hypercorn, cleartext with prior
knowledge). It checks what Apple checks — the provider JWT against the key's public half, the
topic, the push type, a JSON payload — records every request, and answers each device token
from a script (default 200)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypercorn.asyncio import serve
from hypercorn.config import Config

TEAM_ID = "TEAMAPNS01"
KEY_ID = "APNSKEY001"
TOPIC = "com.rendio.app"
_REASONS = {
    400: "BadDeviceToken",
    410: "Unregistered",
    429: "TooManyRequests",
    503: "ServiceUnavailable",
}


@dataclass
class Push:
    token: str
    http_version: str
    headers: dict[str, str]
    payload: dict[str, Any]
    problems: list[str]


@dataclass
class FakeApns:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    pushes: list[Push] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    url: str = ""

    def private_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def settings(self) -> dict[str, Any]:
        return {
            "apns_key_id": KEY_ID,
            "apns_team_id": TEAM_ID,
            "apns_private_key": self.private_pem(),
            "apns_topic": TOPIC,
            "apns_url": self.url,
        }

    def to(self, token: str) -> list[Push]:
        return [push for push in self.pushes if push.token == token]

    def _check(self, headers: dict[str, str], body: bytes) -> tuple[list[str], dict[str, Any]]:
        problems = []
        scheme, _, token = headers.get("authorization", "").partition(" ")
        try:
            if scheme != "bearer":
                raise jwt.InvalidTokenError("not a bearer token")
            if jwt.get_unverified_header(token).get("kid") != KEY_ID:
                raise jwt.InvalidTokenError("wrong kid")
            claims = jwt.decode(token, self.key.public_key(), algorithms=["ES256"])
            if claims.get("iss") != TEAM_ID or not isinstance(claims.get("iat"), int):
                raise jwt.InvalidTokenError("wrong iss or iat")
        except jwt.InvalidTokenError as error:
            problems.append(f"provider token: {error}")
        if headers.get("apns-topic") != TOPIC:
            problems.append("topic")
        if headers.get("apns-push-type") != "alert":
            problems.append("push type")
        try:
            payload = json.loads(body)
            if not isinstance(payload.get("aps", {}).get("alert"), dict):
                problems.append("no alert")
        except ValueError:
            payload = {}
            problems.append("payload is not JSON")
        return problems, payload

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        token = scope["path"].rsplit("/", 1)[-1]
        problems, payload = self._check(headers, body)
        self.pushes.append(Push(token, scope["http_version"], headers, payload, problems))
        planned = self.script.get(token)
        status = planned.pop(0) if planned else 200
        if problems:
            status = 403
        answer = (
            b""
            if status == 200
            else json.dumps({"reason": _REASONS.get(status, "Forbidden")}).encode()
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"apns-id", str(uuid.uuid4()).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})


class ServedOverHttp2:
    """Runs the fake under hypercorn in a background thread."""

    def __init__(self, app: FakeApns) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.app = app
        self.app.url = f"http://127.0.0.1:{self.port}"
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.loglevel = "WARNING"

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)

        asyncio.run(main())

    def __enter__(self) -> FakeApns:
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self.app
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the fake APNs did not start")

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
