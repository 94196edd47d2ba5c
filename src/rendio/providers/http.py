"""One provider's HTTP client: its base URL, credentials and time limits, and every answer
classified the same way for every provider — 408, 429, 5xx and network errors are retryable
(the runner retries them with the configured backoff), any other 4xx ends the job.

Error messages keep the provider's own words (the start of its answer) for logs and the admin
tools; they never include our request's headers, so no key reaches a log.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from rendio.providers.base import ProviderError

_SNIPPET = 300


def _not_a_number(constant: str) -> Any:
    raise ValueError(f"{constant} is not a number JSON allows")


def _retryable(status: int) -> bool:
    return status in (408, 429) or status >= 500


class ProviderHttp:
    def __init__(
        self, name: str, base_url: str, headers: dict[str, str], *, timeout: float = 30.0
    ) -> None:
        self.name = name
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
        )

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request (`url` absolute or relative to the base URL); return a 2xx or 3xx
        answer, raise ProviderError for anything else."""
        try:
            response = await self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as error:
            # Nothing reached the provider.
            raise ProviderError(f"{self.name}: {type(error).__name__}", retryable=True) from None
        except httpx.HTTPError as error:
            raise ProviderError(
                f"{self.name}: {type(error).__name__}", retryable=True, maybe_done=True
            ) from None
        if response.status_code >= 400:
            snippet = response.text[:_SNIPPET].strip()
            raise ProviderError(
                f"{self.name} answered {response.status_code}: {snippet}",
                retryable=_retryable(response.status_code),
                status=response.status_code,
            )
        return response

    async def json(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        """`call`, and the answer's JSON object (a body that is not one is retryable: a
        provider's proxy answering an HTML page passes)."""
        response = await self.call(method, url, **kwargs)
        try:
            # NaN and Infinity are not JSON, and PostgreSQL would refuse them in a jsonb.
            body = json.loads(response.content, parse_constant=_not_a_number)
        except ValueError:
            raise ProviderError(
                f"{self.name} answered a body that is not JSON", retryable=True, maybe_done=True
            ) from None
        if not isinstance(body, dict):
            raise ProviderError(f"{self.name} answered JSON that is not an object", retryable=True)
        return body

    async def aclose(self) -> None:
        await self._client.aclose()


def text_of(value: Any, limit: int = 1000) -> str:
    """A provider's error field (a string, or an object with a message) as plain text."""
    if isinstance(value, dict):
        value = value.get("message") or value.get("detail") or value
    return str(value)[:limit]
