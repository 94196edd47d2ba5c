"""/auth/v1: anonymous sign-up, refresh rotation and reuse, logout scopes, get-user, errors."""

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from tests.helpers.clients import assert_gotrue_error, bearer, open_client

SUPABASE_HEADERS = {"X-Supabase-Api-Version": "2024-01-01"}


async def sign_up(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.post(
        "/auth/v1/signup",
        json={"data": {}, "gotrue_meta_security": {"captcha_token": None}},
        headers=SUPABASE_HEADERS,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "refresh_token"}, json={"refresh_token": token}
    )


async def test_anonymous_signup_returns_a_supabase_session(client: httpx.AsyncClient) -> None:
    session = await sign_up(client)
    assert session["token_type"] == "bearer"
    assert session["expires_in"] == 3600
    assert session["expires_at"] > 0
    user = session["user"]
    assert user["aud"] == "authenticated"
    assert user["role"] == "authenticated"
    assert user["is_anonymous"] is True
    assert user["app_metadata"] == {"provider": "anonymous", "providers": ["anonymous"]}
    assert user["user_metadata"] == {}
    assert user["created_at"]

    me = await client.get("/auth/v1/user", headers=bearer(session))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]


async def test_email_signup_is_not_offered(client: httpx.AsyncClient, db: AsyncSession) -> None:
    response = await client.post(
        "/auth/v1/signup", json={"email": "a@example.com", "password": "hunter22"}
    )
    assert_gotrue_error(response, 422, "email_provider_disabled")
    assert (await db.execute(text("SELECT count(*) FROM users"))).scalar_one() == 0


async def test_refresh_rotates_the_token(client: httpx.AsyncClient) -> None:
    session = await sign_up(client)
    renewed = await refresh(client, session["refresh_token"])
    assert renewed.status_code == 200
    body = renewed.json()
    assert body["refresh_token"] != session["refresh_token"]
    assert body["user"]["id"] == session["user"]["id"]
    again = await refresh(client, body["refresh_token"])
    assert again.status_code == 200
    profile = await client.get("/functions/v1/user-profile", headers=bearer(again.json()))
    assert profile.status_code == 200


async def test_a_just_rotated_token_gets_the_current_one(client: httpx.AsyncClient) -> None:
    """Within the reuse interval the parent answers with the chain's live token (GoTrue)."""
    session = await sign_up(client)
    child = (await refresh(client, session["refresh_token"])).json()["refresh_token"]
    grandchild = (await refresh(client, child)).json()["refresh_token"]
    replay = await refresh(client, session["refresh_token"])
    assert replay.status_code == 200
    assert replay.json()["refresh_token"] == grandchild
    assert (await refresh(client, grandchild)).status_code == 200


async def test_concurrent_refreshes_of_one_token_agree(client: httpx.AsyncClient) -> None:
    session = await sign_up(client)
    responses = await asyncio.gather(
        *(refresh(client, session["refresh_token"]) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["refresh_token"] for r in responses}) == 1


@pytest.fixture
async def strict_client(make_settings: Any) -> Any:
    """Reuse interval 0: any reuse of a rotated token is treated as theft."""
    settings = make_settings(refresh_reuse_interval=0)
    async for http in open_client(create_app(settings, settings.database_url)):
        yield http


async def test_reuse_of_a_rotated_token_revokes_the_family(
    strict_client: httpx.AsyncClient,
) -> None:
    client = strict_client
    session = await sign_up(client)
    renewed = (await refresh(client, session["refresh_token"])).json()

    stolen = await refresh(client, session["refresh_token"])
    assert_gotrue_error(stolen, 400, "refresh_token_already_used")

    assert_gotrue_error(await refresh(client, renewed["refresh_token"]), 400, "session_not_found")
    for token in (session, renewed):
        refused = await client.get("/functions/v1/user-profile", headers=bearer(token))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "ERR_4005"


async def test_reuse_after_the_interval_revokes(make_settings: Any, db: AsyncSession) -> None:
    settings = make_settings(refresh_reuse_interval=1)
    async for client in open_client(create_app(settings, settings.database_url)):
        session = await sign_up(client)
        assert (await refresh(client, session["refresh_token"])).status_code == 200
        await db.execute(text("UPDATE refresh_tokens SET rotated_at = now() - interval '2 s'"))
        await db.commit()
        late = await refresh(client, session["refresh_token"])
        assert_gotrue_error(late, 400, "refresh_token_already_used")
        revoked = await db.execute(text("SELECT revoked_at IS NOT NULL FROM auth_sessions"))
        assert revoked.scalar_one() is True


async def test_refresh_errors(client: httpx.AsyncClient) -> None:
    assert_gotrue_error(await refresh(client, "never-issued"), 400, "refresh_token_not_found")
    missing = await client.post("/auth/v1/token", params={"grant_type": "refresh_token"}, json={})
    assert_gotrue_error(missing, 400, "validation_failed")
    odd = await client.post("/auth/v1/token", params={"grant_type": "password"}, json={})
    assert_gotrue_error(odd, 400, "unsupported_grant_type")
    none = await client.post("/auth/v1/token", json={})
    assert_gotrue_error(none, 400, "unsupported_grant_type")
    garbage = await client.post(
        "/auth/v1/token?grant_type=refresh_token",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert_gotrue_error(garbage, 400, "bad_json")
    typed = await client.post("/auth/v1/token?grant_type=refresh_token", json={"refresh_token": 12})
    assert_gotrue_error(typed, 400, "validation_failed")


async def test_a_banned_user_cannot_refresh(client: httpx.AsyncClient, db: AsyncSession) -> None:
    session = await sign_up(client)
    await db.execute(text("UPDATE users SET banned_at = now()"))
    await db.commit()
    assert_gotrue_error(await refresh(client, session["refresh_token"]), 400, "user_banned")


async def test_get_user_refusals(client: httpx.AsyncClient) -> None:
    assert_gotrue_error(await client.get("/auth/v1/user"), 401, "no_authorization")
    garbage = await client.get("/auth/v1/user", headers={"Authorization": "Bearer x.y.z"})
    assert_gotrue_error(garbage, 403, "bad_jwt")


async def test_logout_scopes(client: httpx.AsyncClient) -> None:
    first = await sign_up(client)
    bad_scope = await client.post("/auth/v1/logout", params={"scope": "all"}, headers=bearer(first))
    assert_gotrue_error(bad_scope, 400, "validation_failed")
    renewed = (await refresh(client, first["refresh_token"])).json()

    local = await client.post("/auth/v1/logout", params={"scope": "local"}, headers=bearer(first))
    assert local.status_code == 204
    assert local.content == b""
    for token in (first, renewed):
        assert_gotrue_error(
            await client.get("/auth/v1/user", headers=bearer(token)), 403, "session_not_found"
        )
    assert_gotrue_error(await refresh(client, renewed["refresh_token"]), 400, "session_not_found")


async def test_logout_others_and_global(client: httpx.AsyncClient, db: AsyncSession) -> None:
    one = await sign_up(client)
    user_id = one["user"]["id"]
    # Extra sessions for the same user, as a second device's sign-in would make.
    await db.execute(
        text("INSERT INTO auth_sessions (user_id) SELECT id FROM users WHERE id = :id"),
        {"id": user_id},
    )
    await db.commit()
    others = await client.post("/auth/v1/logout", params={"scope": "others"}, headers=bearer(one))
    assert others.status_code == 204
    live = await db.execute(text("SELECT count(*) FROM auth_sessions WHERE revoked_at IS NULL"))
    assert live.scalar_one() == 1
    assert (await client.get("/auth/v1/user", headers=bearer(one))).status_code == 200

    everything = await client.post("/auth/v1/logout", headers=bearer(one))
    assert everything.status_code == 204
    live = await db.execute(text("SELECT count(*) FROM auth_sessions WHERE revoked_at IS NULL"))
    assert live.scalar_one() == 0
    assert_gotrue_error(await refresh(client, one["refresh_token"]), 400, "session_not_found")


async def test_unknown_auth_paths_answer_in_gotrue_shape(client: httpx.AsyncClient) -> None:
    assert_gotrue_error(await client.get("/auth/v1/settings-nope"), 404, "not_found")


async def test_the_apikey_gate(make_settings: Any) -> None:
    settings = make_settings(anon_key="public-anon-key")
    async for client in open_client(create_app(settings, settings.database_url)):
        refused = await client.post("/auth/v1/signup", json={})
        assert_gotrue_error(refused, 401, "no_api_key")
        wrong = await client.post("/auth/v1/signup", json={}, headers={"apikey": "other"})
        assert_gotrue_error(wrong, 401, "no_api_key")

        session = (
            await client.post("/auth/v1/signup", json={}, headers={"apikey": "public-anon-key"})
        ).json()
        # A missing or wrong key is ERR_4016, which the app can tell from an expired session.
        no_key = await client.get("/functions/v1/user-profile", headers=bearer(session))
        assert no_key.status_code == 401
        assert no_key.json()["error"]["code"] == "ERR_4016"
        wrong_key = await client.get(
            "/functions/v1/user-profile",
            headers={**bearer(session), "apikey": "other", "Accept-Language": "tr"},
        )
        assert wrong_key.status_code == 401
        assert wrong_key.json()["error"]["code"] == "ERR_4016"
        assert wrong_key.json()["error"]["message"].startswith("API anahtarı")
        models = await client.get("/functions/v1/get-models")
        assert models.status_code == 401
        assert models.json()["error"]["code"] == "ERR_4016"
        expired = await client.get(
            "/functions/v1/user-profile",
            headers={"Authorization": "Bearer x.y.z", "apikey": "public-anon-key"},
        )
        assert expired.status_code == 401
        assert expired.json()["error"]["code"] == "ERR_4005"
        with_key = await client.get(
            "/functions/v1/user-profile",
            headers={**bearer(session), "apikey": "public-anon-key"},
        )
        assert with_key.status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_body_refusals_under_auth_v1_keep_gotrue_shape(client: httpx.AsyncClient) -> None:
    not_json = await client.post(
        "/auth/v1/signup", content=b"data=1", headers={"Content-Type": "text/plain"}
    )
    assert_gotrue_error(not_json, 400, "validation_failed")
    huge = await client.post(
        "/auth/v1/token?grant_type=refresh_token",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert_gotrue_error(huge, 400, "validation_failed")


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"refresh_token": ' + b"9" * 5000 + b"}",
        b'{"refresh_token": "\xff\xfe"}',
    ],
    ids=["deep", "huge-integer", "invalid-utf8"],
)
async def test_unparseable_bodies_are_bad_json(client: httpx.AsyncClient, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    refused = await client.post(
        "/auth/v1/token?grant_type=refresh_token", content=body, headers=headers
    )
    assert_gotrue_error(refused, 400, "bad_json")
    enveloped = await client.post("/functions/v1/device-check", content=body, headers=headers)
    assert enveloped.status_code == 422
    assert enveloped.json()["error"]["details"] == {"body": "malformed JSON"}
