"""Apple Push Notification service over HTTP/2 with token auth.

Each request carries a provider JWT (ES256, `kid` = key id, `iss` = team id, `iat`): Apple
refuses one older than an hour and throttles one renewed more often than every 20 minutes, so
it is renewed after 40. The host follows the token's environment (production or sandbox);
`RENDIO_APNS_URL` replaces it (a `http://` URL speaks HTTP/2 without TLS, for local fakes).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from rendio.config import Settings

PRODUCTION_URL = "https://api.push.apple.com"
SANDBOX_URL = "https://api.sandbox.push.apple.com"
_RENEW_AFTER_SECONDS = 40 * 60


@dataclass(frozen=True)
class ApnsAnswer:
    status: int  # 0: no answer (network error, timeout)
    apns_id: str | None
    reason: str | None

    @property
    def retryable(self) -> bool:
        return self.status in (0, 429) or self.status >= 500

    @property
    def token_is_dead(self) -> bool:
        """Apple says the token will never work again: forget it."""
        return self.status == 410 or (self.status == 400 and self.reason == "BadDeviceToken")


class ApnsClient:
    def __init__(self, settings: Settings) -> None:
        assert settings.push_configured and settings.apns_private_key is not None
        self._key_id = settings.apns_key_id
        self._team_id = settings.apns_team_id
        self._private_key = settings.apns_private_key.get_secret_value()
        self._topic = settings.apns_topic
        self._override = settings.apns_url
        cleartext = bool(self._override and self._override.startswith("http://"))
        # HTTP/2 only (Apple serves nothing else); over cleartext that is prior knowledge.
        self._http = httpx.AsyncClient(
            http1=not cleartext, http2=True, timeout=settings.apns_timeout
        )
        self._token: tuple[str, float] | None = None

    def _bearer(self) -> str:
        now = time.time()
        if self._token is None or now - self._token[1] > _RENEW_AFTER_SECONDS:
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(now)},
                self._private_key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._token = (token, now)
        return f"bearer {self._token[0]}"

    def _url(self, environment: str) -> str:
        if self._override:
            return self._override.rstrip("/")
        return PRODUCTION_URL if environment == "production" else SANDBOX_URL

    async def send(
        self, device_token: str, environment: str, payload: dict[str, Any]
    ) -> ApnsAnswer:
        headers = {
            "authorization": self._bearer(),
            "apns-topic": self._topic or "",
            "apns-push-type": "alert",
            "apns-priority": "10",
        }
        url = f"{self._url(environment)}/3/device/{device_token}"
        try:
            response = await self._http.post(url, content=json.dumps(payload), headers=headers)
        except httpx.HTTPError as error:
            return ApnsAnswer(0, None, type(error).__name__)
        reason = None
        if response.status_code != 200:
            try:
                reason = str(response.json().get("reason"))
            except (ValueError, AttributeError):
                reason = response.text[:200] or None
        return ApnsAnswer(response.status_code, response.headers.get("apns-id"), reason)

    async def aclose(self) -> None:
        await self._http.aclose()
