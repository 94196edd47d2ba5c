"""Talking to the app in-process: a client for an app, a guest with a session, GoTrue errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


async def open_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


def app_of(client: httpx.AsyncClient) -> Any:
    """The app behind an in-process client (to reach its services and queue in a test)."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    return transport.app


async def device_check(
    client: httpx.AsyncClient, device_id: str, token: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/functions/v1/device-check",
        json={"device_id": device_id, "device_token": token},
        headers=headers,
    )


def bearer(session: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}


@dataclass(frozen=True)
class Guest:
    """A guest onboarded through device-check: its answer, its session and request headers."""

    answer: dict[str, Any]

    @property
    def user_id(self) -> str:
        return str(self.answer["user_id"])

    @property
    def session(self) -> dict[str, Any]:
        return dict(self.answer["session"])

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.session)


async def guest(client: httpx.AsyncClient, device: str = "install-1") -> Guest:
    """The guest of `device` (its own phone, so it gets the starter credits once)."""
    response = await device_check(client, device, f"phone-{device}")
    assert response.status_code == 200, response.text
    return Guest(response.json())


def assert_gotrue_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["error_code"] == code
    assert body["msg"]
    assert response.headers["x-sb-error-code"] == code
