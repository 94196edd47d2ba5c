"""CORS for configured browser origins (RENDIO_CORS_ORIGINS): off by default; preflights are
answered without an apikey and outside the rate limits; real answers, refusals included,
carry the headers a browser needs to let the app read them."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rendio.app import create_app
from tests.helpers.clients import open_client

APP_ORIGIN = "https://app.example.com"
SUPABASE_JS_HEADERS = [
    "authorization",
    "apikey",
    "content-type",
    "x-client-info",
    "accept-profile",
    "content-profile",
    "prefer",
    "idempotency-key",
    "range",
    "x-supabase-api-version",
]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
EXPOSED = ["content-range", "retry-after", "ratelimit", "ratelimit-policy", "x-request-id"]


def preflight_headers(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": ", ".join(SUPABASE_JS_HEADERS),
    }


def listed(header: str | None) -> set[str]:
    return {part.strip().lower() for part in (header or "").split(",") if part.strip()}


@pytest.fixture
async def cors_client(make_settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app with CORS for one origin, an apikey required and a tight per-IP ceiling."""
    settings = make_settings(
        cors_origins=[APP_ORIGIN, "http://localhost:5173"],
        anon_key="public-anon-key",
        rate_limit_per_ip="3/minute",
    )
    async for client in open_client(create_app(settings, settings.database_url or "")):
        yield client


async def test_cors_is_off_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options(
        "/functions/v1/get-models", headers=preflight_headers(APP_ORIGIN, "GET")
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-methods" not in preflight.headers
    real = await client.get("/functions/v1/get-models", headers={"Origin": APP_ORIGIN})
    assert real.status_code == 200
    assert "access-control-allow-origin" not in real.headers


async def test_a_preflight_from_an_allowed_origin(cors_client: httpx.AsyncClient) -> None:
    # More preflights than the per-IP ceiling allows requests, none with an apikey.
    for path in ["/functions/v1/generate-video", "/auth/v1/user", "/rest/v1/models"] * 2:
        method = "PUT" if path == "/auth/v1/user" else "POST"
        answered = await cors_client.options(path, headers=preflight_headers(APP_ORIGIN, method))
        assert answered.status_code == 200, (path, answered.text)
        assert answered.headers["access-control-allow-origin"] == APP_ORIGIN
        assert listed(answered.headers["access-control-allow-methods"]) >= {
            m.lower() for m in METHODS
        }
        assert listed(answered.headers["access-control-allow-headers"]) >= set(SUPABASE_JS_HEADERS)
    # The ceiling was not touched by them: real requests still get through.
    real = await cors_client.get(
        "/functions/v1/get-models", headers={"Origin": APP_ORIGIN, "apikey": "public-anon-key"}
    )
    assert real.status_code == 200, real.text


async def test_a_preflight_from_another_origin_gets_no_allowance(
    cors_client: httpx.AsyncClient,
) -> None:
    for origin in ["https://evil.example.com", "https://app.example.com.evil.net", "null"]:
        answered = await cors_client.options(
            "/functions/v1/generate-video", headers=preflight_headers(origin)
        )
        assert answered.status_code >= 400
        assert "access-control-allow-origin" not in answered.headers


async def test_a_preflight_asking_for_an_unlisted_header_is_refused(
    cors_client: httpx.AsyncClient,
) -> None:
    headers = preflight_headers(APP_ORIGIN) | {"Access-Control-Request-Headers": "x-secret"}
    answered = await cors_client.options("/functions/v1/generate-video", headers=headers)
    assert answered.status_code == 400
    assert "x-secret" not in listed(answered.headers.get("access-control-allow-headers"))


async def test_real_answers_carry_the_headers(cors_client: httpx.AsyncClient) -> None:
    models = await cors_client.get(
        "/functions/v1/get-models",
        headers={"Origin": "http://localhost:5173", "apikey": "public-anon-key"},
    )
    assert models.status_code == 200
    assert models.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert listed(models.headers["access-control-expose-headers"]) >= set(EXPOSED)
    assert "origin" in listed(models.headers.get("vary"))

    # A refusal must be readable by the app too, or it only sees a network error.
    no_key = await cors_client.get("/functions/v1/get-models", headers={"Origin": APP_ORIGIN})
    assert no_key.status_code == 401
    assert no_key.json()["error"]["code"] == "ERR_4016"
    assert no_key.headers["access-control-allow-origin"] == APP_ORIGIN

    for _ in range(3):  # past the per-IP ceiling of 3 a minute
        limited = await cors_client.get(
            "/functions/v1/get-models",
            headers={"Origin": APP_ORIGIN, "apikey": "public-anon-key"},
        )
    assert limited.status_code == 429, limited.text
    assert limited.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "retry-after" in listed(limited.headers["access-control-expose-headers"])

    stranger = await cors_client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert stranger.status_code == 200
    assert "access-control-allow-origin" not in stranger.headers


async def test_any_origin(make_settings: Any) -> None:
    settings = make_settings(cors_origins=["*"])
    async for client in open_client(create_app(settings, settings.database_url or "")):
        preflight = await client.options(
            "/auth/v1/signup", headers=preflight_headers("https://anywhere.example")
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        real = await client.get("/health", headers={"Origin": "https://anywhere.example"})
        assert real.headers["access-control-allow-origin"] == "*"
