"""What the provider webhooks are handed at run time: their slice of the services object, with
one verifier per provider that can call back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import httpx
import structlog
from fastapi import Depends

from rendio.config import Settings
from rendio.platform.services import CoreServices, services_dependency
from rendio.webhooks.signatures import FalKeys, SecretSource, StandardWebhooks

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Verifiers:
    fal: FalKeys
    # None: that provider is not configured (or has no secret): its endpoint refuses all.
    replicate: StandardWebhooks | None
    openai: StandardWebhooks | None


@dataclass(frozen=True)
class WebhookServices(CoreServices):
    verifiers: Verifiers


def _replicate_secret(settings: Settings) -> SecretSource:
    """Replicate's signing secret from its API (one per account: `GET
    /v1/webhooks/default/secret` → `{"key": "whsec_…"}`)."""

    async def fetch() -> str | None:
        assert settings.replicate_api_token is not None
        url = f"{settings.replicate_api_url.rstrip('/')}/v1/webhooks/default/secret"
        token = settings.replicate_api_token.get_secret_value()
        try:
            async with httpx.AsyncClient(timeout=settings.provider_timeout) as client:
                answer = await client.get(url, headers={"Authorization": f"Bearer {token}"})
                answer.raise_for_status()
                key = answer.json().get("key")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            log.warning("replicate_webhook_secret_unavailable", error=repr(error))
            return None
        return key if isinstance(key, str) else None

    return fetch


def build_verifiers(settings: Settings) -> Verifiers:
    replicate = None
    if settings.replicate_api_token is not None:
        given = settings.replicate_webhook_secret
        replicate = StandardWebhooks(
            given.get_secret_value() if given else None,
            None if given else _replicate_secret(settings),
        )
    openai = None
    if settings.openai_webhook_secret is not None:
        openai = StandardWebhooks(settings.openai_webhook_secret.get_secret_value())
    return Verifiers(FalKeys(settings.fal_jwks_url), replicate, openai)


WebhookDeps = Annotated[WebhookServices, Depends(services_dependency(WebhookServices))]
