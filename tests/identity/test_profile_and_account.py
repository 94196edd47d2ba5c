"""user-profile, delete-account, and the one auth dependency's refusals."""

import time
import uuid
from typing import Any

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.tokens import mint_access_token
from tests.helpers.clients import bearer, guest


async def test_profile_reads_and_updates(client: httpx.AsyncClient) -> None:
    session = (await guest(client)).session
    profile = (await client.get("/functions/v1/user-profile", headers=bearer(session))).json()
    assert profile["language"] == "en"
    assert profile["theme_preference"] == "system"
    assert profile["credits_total"] == 10
    assert profile["tier"] == "free"
    assert profile["email"] is None

    changed = await client.patch(
        "/functions/v1/user-profile",
        json={"language": "tr", "theme_preference": "dark"},
        headers=bearer(session),
    )
    assert changed.status_code == 200
    assert changed.json()["language"] == "tr"
    assert changed.json()["theme_preference"] == "dark"

    partial = await client.post(
        "/functions/v1/user-profile", json={"language": "es"}, headers=bearer(session)
    )
    assert partial.json()["language"] == "es"
    assert partial.json()["theme_preference"] == "dark"
    empty = await client.post("/functions/v1/user-profile", headers=bearer(session))
    assert empty.status_code == 200
    assert empty.json()["language"] == "es"


async def test_profile_refuses_bad_and_read_only_fields(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    created = await guest(client)
    session = created.session
    refused = [
        {"language": "de"},
        {"theme_preference": "blue"},
        {"language": 7},
        {"credits_remaining": 1000},
        {"is_guest": False},
        {"tier": "pro"},
        {"email": "x@example.com"},
        {"language": "tr", "credits_total": 5},
    ]
    for body in refused:
        response = await client.patch(
            "/functions/v1/user-profile", json=body, headers=bearer(session)
        )
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "ERR_4013"
    other = await client.patch(
        "/functions/v1/user-profile",
        json={"user_id": str(uuid.uuid4()), "language": "tr"},
        headers=bearer(session),
    )
    assert other.status_code == 403
    assert other.json()["error"]["code"] == "ERR_4010"
    same = await client.patch(
        "/functions/v1/user-profile",
        json={"user_id": created.user_id, "theme_preference": "light"},
        headers=bearer(session),
    )
    assert same.status_code == 200
    row = await db.execute(text("SELECT language, credits_remaining, tier FROM users"))
    assert tuple(row.one()) == ("en", 10, "free")


async def test_refusals_of_the_auth_dependency(
    client: httpx.AsyncClient, db: AsyncSession, settings: Any
) -> None:
    created = await guest(client)
    session = created.session
    secret = settings.resolved_jwt_secret()
    claims = jwt.decode(
        session["access_token"], secret, algorithms=["HS256"], audience="authenticated"
    )
    expired, _ = mint_access_token(
        secret,
        issuer="x",
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.UUID(claims["session_id"]),
        is_anonymous=True,
        now=int(time.time()) - 7200,
    )
    forged, _ = mint_access_token(
        "another-secret-of-sufficient-length-000",
        issuer="x",
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.UUID(claims["session_id"]),
        is_anonymous=True,
    )
    unknown_session, _ = mint_access_token(
        secret,
        issuer="x",
        user_id=uuid.UUID(claims["sub"]),
        session_id=uuid.uuid4(),
        is_anonymous=True,
    )
    none_alg = jwt.encode({**claims}, None, algorithm="none")
    headers_to_refuse = [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {session['access_token']}"},
        {"Authorization": "Bearer not.a.jwt"},
        {"Authorization": f"Bearer {expired}"},
        {"Authorization": f"Bearer {forged}"},
        {"Authorization": f"Bearer {unknown_session}"},
        {"Authorization": f"Bearer {none_alg}"},
    ]
    for headers in headers_to_refuse:
        response = await client.get("/functions/v1/user-profile", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "ERR_4005"

    await client.post("/auth/v1/logout", params={"scope": "local"}, headers=bearer(session))
    revoked = await client.get("/functions/v1/user-profile", headers=bearer(session))
    assert revoked.status_code == 401

    fresh = (await guest(client)).session
    await db.execute(text("UPDATE users SET banned_at = now()"))
    await db.commit()
    banned = await client.get("/functions/v1/user-profile", headers=bearer(fresh))
    assert banned.status_code == 403
    assert banned.json()["error"]["code"] == "ERR_4010"


async def test_delete_account_removes_the_person_and_keeps_anonymous_ledger_rows(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    created = await guest(client)
    session = created.session
    response = await client.post("/functions/v1/delete-account", headers=bearer(session))
    assert response.status_code == 200
    assert response.json() == {"user_id": created.user_id, "deleted": True}

    counts = await db.execute(
        text(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM auth_sessions), "
            "(SELECT count(*) FROM refresh_tokens)"
        )
    )
    assert tuple(counts.one()) == (0, 0, 0)
    ledger = await db.execute(text("SELECT user_id, change, reason FROM quota_log"))
    assert [tuple(row) for row in ledger] == [(None, 10, "initial_grant")]

    gone = await client.get("/functions/v1/user-profile", headers=bearer(session))
    assert gone.status_code == 401
    refresh = await client.post(
        "/auth/v1/token?grant_type=refresh_token", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.status_code == 400
    # The physical device keeps its claimed bit: a new install gets no second grant.
    again = await guest(client)
    assert again.answer["credits_remaining"] == 0
