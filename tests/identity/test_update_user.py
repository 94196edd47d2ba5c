"""PUT /auth/v1/user (supabase `updateUser`): metadata merges, refusals in GoTrue's shape,
bad bodies refused without a write and never a 500."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.metadata import MAX_BYTES
from tests.fakes.apple import FakeApple
from tests.helpers.clients import assert_gotrue_error, bearer, guest

JSON = {"Content-Type": "application/json"}


async def sign_up(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/auth/v1/signup", json=body)
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def put_user(client: httpx.AsyncClient, session: dict[str, Any], body: Any) -> httpx.Response:
    return await client.put("/auth/v1/user", json=body, headers=bearer(session))


async def stored(db: AsyncSession, user_id: str) -> tuple[Any, Any]:
    """The user's stored metadata and updated_at, read past any cached state."""
    row = (
        await db.execute(
            text("SELECT user_metadata, updated_at FROM users WHERE id = :id"), {"id": user_id}
        )
    ).one()
    await db.rollback()
    return row.user_metadata, row.updated_at


async def test_data_merges_into_user_metadata_and_shows_everywhere(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    session = await sign_up(client)
    first = await put_user(client, session, {"data": {"name": "Ada", "prefs": {"hd": True}}})
    assert first.status_code == 200, first.text
    assert first.json()["user_metadata"] == {"name": "Ada", "prefs": {"hd": True}}
    assert first.json()["id"] == session["user"]["id"]
    assert first.json()["is_anonymous"] is True

    # Top-level keys merge; a null removes its key (GoTrue's rule).
    second = await put_user(client, session, {"data": {"prefs": None, "onboarded": 1}})
    assert second.status_code == 200, second.text
    expected = {"name": "Ada", "onboarded": 1}
    assert second.json()["user_metadata"] == expected
    assert (await stored(db, session["user"]["id"]))[0] == expected

    me = await client.get("/auth/v1/user", headers=bearer(session))
    assert me.json()["user_metadata"] == expected
    renewed = await client.post(
        "/auth/v1/token",
        params={"grant_type": "refresh_token"},
        json={"refresh_token": session["refresh_token"]},
    )
    assert renewed.json()["user"]["user_metadata"] == expected


async def test_a_device_check_session_carries_the_metadata(client: httpx.AsyncClient) -> None:
    onboarded = await guest(client, "install-meta")
    updated = await put_user(client, onboarded.session, {"data": {"plan": "trial"}})
    assert updated.status_code == 200, updated.text
    again = await guest(client, "install-meta")
    assert again.user_id == onboarded.user_id
    assert again.session["user"]["user_metadata"] == {"plan": "trial"}


async def test_anonymous_sign_up_keeps_its_data(client: httpx.AsyncClient) -> None:
    session = await sign_up(client, data={"source": "ad-campaign"})
    assert session["user"]["user_metadata"] == {"source": "ad-campaign"}
    me = await client.get("/auth/v1/user", headers=bearer(session))
    assert me.json()["user_metadata"] == {"source": "ad-campaign"}
    refused = await client.post("/auth/v1/signup", json={"data": {"x": "a" * MAX_BYTES}})
    assert_gotrue_error(refused, 400, "validation_failed")


async def test_no_data_changes_nothing(client: httpx.AsyncClient, db: AsyncSession) -> None:
    session = await sign_up(client)
    before = await stored(db, session["user"]["id"])
    for body in ({}, {"data": None}, {"data": {}}, {"nonce": "n", "code_challenge": "c"}):
        answered = await put_user(client, session, body)
        assert answered.status_code == 200, answered.text
        assert answered.json()["user_metadata"] == {}
    assert await stored(db, session["user"]["id"]) == before


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "new@example.com"}, 422, "email_provider_disabled"),
        ({"phone": "+15555550100"}, 422, "phone_provider_disabled"),
        ({"password": "correct horse battery staple"}, 422, "email_provider_disabled"),
        ({"password": ""}, 422, "email_provider_disabled"),
        ({"app_metadata": {"tier": "pro"}}, 403, "not_admin"),
    ],
    ids=["email", "phone", "password", "empty-password", "app-metadata"],
)
async def test_credential_changes_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    db: AsyncSession,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    session = await sign_up(client)
    before = await stored(db, session["user"]["id"])
    refused = await put_user(client, session, {**body, "data": {"name": "Ada"}})
    assert_gotrue_error(refused, status, code)
    assert await stored(db, session["user"]["id"]) == before


async def test_an_apple_user_may_send_its_own_email(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    signed_in = await apple_client.post(
        "/auth/v1/token",
        params={"grant_type": "id_token"},
        json={"provider": "apple", "id_token": fake_apple.id_token("apple-meta")},
    )
    assert signed_in.status_code == 200, signed_in.text
    session = signed_in.json()
    email = session["user"]["email"]
    assert email
    same = await put_user(apple_client, session, {"email": email, "data": {"name": "Ada"}})
    assert same.status_code == 200, same.text
    assert same.json()["user_metadata"] == {"name": "Ada"}
    assert same.json()["email"] == email
    other = await put_user(apple_client, session, {"email": "else@example.com"})
    assert_gotrue_error(other, 422, "email_provider_disabled")
    assert (await stored(db, session["user"]["id"]))[0] == {"name": "Ada"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"data": "not an object"}',
        b'{"data": ["a", "list"]}',
        b'{"data": 5}',
        b'{"data": true}',
        b'{"email": 5}',
        b'{"app_metadata": "x"}',
        b"[]",
        b'"just a string"',
        b"{nope",
        b'{"data": {"x": NaN}}',
        b'{"data": {"x": [1, Infinity]}}',
        b'{"data": {"x": -Infinity}}',
        b'{"data": {"x": "\\ud800"}}',
        b'{"data": {"\\udfff": 1}}',
        b'{"data": {"x": "nul\\u0000inside"}}',
        b'{"data": {"nul\\u0000key": 1}}',
        b'{"data": {"x": {"y": ["\\u0000"]}}}',
        b'{"data": {"x": "' + b"a" * MAX_BYTES + b'"}}',
        b'{"data": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"data": {"x": ' + b"9" * 5000 + b"}}",
    ],
    ids=[
        "string",
        "list",
        "number",
        "bool",
        "email-number",
        "app-metadata-string",
        "array-body",
        "string-body",
        "malformed",
        "nan",
        "infinity",
        "minus-infinity",
        "lone-surrogate",
        "lone-surrogate-key",
        "nul-value",
        "nul-key",
        "nested-nul",
        "too-large",
        "too-deep",
        "huge-integer",
    ],
)
async def test_bad_bodies_are_refused_without_a_write(
    client: httpx.AsyncClient, db: AsyncSession, raw: bytes
) -> None:
    session = await sign_up(client)
    before = await stored(db, session["user"]["id"])
    refused = await client.put("/auth/v1/user", content=raw, headers={**bearer(session), **JSON})
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["code"] in {"validation_failed", "bad_json"}
    assert body["code"] == refused.headers["x-sb-error-code"]
    assert await stored(db, session["user"]["id"]) == before


async def test_nul_like_text_that_is_not_a_nul_is_kept(client: httpx.AsyncClient) -> None:
    session = await sign_up(client)
    literal = "a backslash and u0000: \\u0000"
    answered = await put_user(client, session, {"data": {"note": literal}})
    assert answered.status_code == 200, answered.text
    assert answered.json()["user_metadata"] == {"note": literal}


async def test_the_size_bound_counts_the_merged_metadata(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    session = await sign_up(client)
    overhead = len(json.dumps({"x": ""}, separators=(",", ":")))
    exactly = {"x": "é" * ((MAX_BYTES - overhead) // 2)}  # two UTF-8 bytes each
    assert len(json.dumps(exactly, ensure_ascii=False, separators=(",", ":")).encode()) == (
        MAX_BYTES
    )
    fits = await put_user(client, session, {"data": exactly})
    assert fits.status_code == 200, fits.text

    one_more = await put_user(client, session, {"data": {"y": 1}})
    assert_gotrue_error(one_more, 400, "validation_failed")
    assert str(MAX_BYTES) in one_more.json()["msg"]
    assert (await stored(db, session["user"]["id"]))[0] == exactly

    # Removing a key makes room again.
    smaller = await put_user(client, session, {"data": {"x": None, "y": 1}})
    assert smaller.status_code == 200, smaller.text
    assert smaller.json()["user_metadata"] == {"y": 1}


async def test_concurrent_updates_lose_no_key(client: httpx.AsyncClient, db: AsyncSession) -> None:
    session = await sign_up(client)
    answers = await asyncio.gather(
        *(put_user(client, session, {"data": {f"key{n}": n}}) for n in range(12))
    )
    assert {answer.status_code for answer in answers} == {200}
    assert (await stored(db, session["user"]["id"]))[0] == {f"key{n}": n for n in range(12)}


async def test_update_needs_a_valid_session(client: httpx.AsyncClient) -> None:
    no_token = await client.put("/auth/v1/user", json={"data": {"a": 1}})
    assert_gotrue_error(no_token, 401, "no_authorization")
    garbage = await client.put(
        "/auth/v1/user", json={"data": {"a": 1}}, headers={"Authorization": "Bearer x.y.z"}
    )
    assert_gotrue_error(garbage, 403, "bad_jwt")
    session = await sign_up(client)
    await client.post("/auth/v1/logout", headers=bearer(session))
    revoked = await put_user(client, session, {"data": {"a": 1}})
    assert_gotrue_error(revoked, 403, "session_not_found")
