"""Sign in with Apple (id_token grant) against a local JWKS, forgery refusals, guest upgrade
and merge — including concurrent retries of one merge."""

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.apple_signin import AppleIdTokenVerifier, InvalidIdToken
from tests.fakes.apple import FakeApple, new_rsa_key
from tests.helpers.clients import assert_gotrue_error, bearer, device_check


async def sign_in(
    client: httpx.AsyncClient,
    id_token: str,
    *,
    nonce: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/auth/v1/token",
        params={"grant_type": "id_token"},
        json={
            "provider": "apple",
            "id_token": id_token,
            "access_token": None,
            "nonce": nonce,
            "gotrue_meta_security": {"captcha_token": None},
        },
        headers=headers or {},
    )


async def count(db: AsyncSession, sql: str, **params: Any) -> Any:
    return (await db.execute(text(sql), params)).scalar_one()


async def test_a_new_apple_account_becomes_a_registered_user(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    response = await sign_in(apple_client, fake_apple.id_token("apple-001"))
    assert response.status_code == 200, response.text
    session = response.json()
    assert session["user"]["is_anonymous"] is False
    assert session["user"]["email"] == "person@privaterelay.appleid.com"
    assert session["user"]["app_metadata"]["provider"] == "apple"
    again = await sign_in(apple_client, fake_apple.id_token("apple-001"))
    assert again.json()["user"]["id"] == session["user"]["id"]
    profile = await apple_client.get("/functions/v1/user-profile", headers=bearer(session))
    assert profile.json()["is_guest"] is False
    assert profile.json()["credits_remaining"] == 0


async def test_nonce_rules(apple_client: httpx.AsyncClient, fake_apple: FakeApple) -> None:
    raw = "a-random-nonce"
    hashed = hashlib.sha256(raw.encode()).hexdigest()
    ok = await sign_in(apple_client, fake_apple.id_token("apple-1", nonce_hash=hashed), nonce=raw)
    assert ok.status_code == 200
    mismatch = await sign_in(
        apple_client, fake_apple.id_token("apple-1", nonce_hash=hashed), nonce="other"
    )
    assert_gotrue_error(mismatch, 400, "bad_oidc_token")
    only_request = await sign_in(apple_client, fake_apple.id_token("apple-1"), nonce=raw)
    assert_gotrue_error(only_request, 400, "bad_oidc_token")
    only_token = await sign_in(apple_client, fake_apple.id_token("apple-1", nonce_hash=hashed))
    assert_gotrue_error(only_token, 400, "bad_oidc_token")
    odd = await sign_in(apple_client, fake_apple.id_token("apple-1", nonce_hash="ñoñce"), nonce=raw)
    assert_gotrue_error(odd, 400, "bad_oidc_token")


def _hs256_with_public_key(fake: FakeApple) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the RSA public key's PEM."""
    public_pem = (
        fake.signing_keys["apple-key-1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    header = {"alg": "HS256", "kid": "apple-key-1", "typ": "JWT"}
    claims = {
        "iss": "https://appleid.apple.com",
        "aud": "com.rendio.app",
        "sub": "apple-1",
        "iat": now,
        "exp": now + 600,
    }
    signing_input = b".".join(
        jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (header, claims)
    )
    signature = hmac.new(public_pem, signing_input, "sha256").digest()
    return b".".join([signing_input, jwt.utils.base64url_encode(signature)]).decode()


async def test_forged_tokens_are_refused_and_change_nothing(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    now = int(time.time())
    unsigned_claims = {
        "iss": "https://appleid.apple.com",
        "aud": "com.rendio.app",
        "sub": "apple-1",
        "iat": now,
        "exp": now + 600,
    }
    forgeries = {
        "foreign key, known kid": fake_apple.id_token("apple-1", key=new_rsa_key()),
        "unknown kid": fake_apple.id_token("apple-1", kid="nope", key=new_rsa_key()),
        "expired": fake_apple.id_token("apple-1", expires_in=-60),
        "wrong audience": fake_apple.id_token("apple-1", audience="com.someone.else"),
        "wrong issuer": fake_apple.id_token("apple-1", issuer="https://evil.example"),
        "alg none": jwt.encode(
            unsigned_claims, None, algorithm="none", headers={"kid": "apple-key-1"}
        ),
        "HS256 with the public key": _hs256_with_public_key(fake_apple),
        "garbage": "not-a-jwt",
        "tampered": _tamper(fake_apple.id_token("apple-1")),
    }
    for name, token in forgeries.items():
        response = await sign_in(apple_client, token)
        assert response.status_code == 400, name
        assert response.json()["code"] == "bad_oidc_token", name
    assert await count(db, "SELECT count(*) FROM users") == 0
    assert await count(db, "SELECT count(*) FROM auth_sessions") == 0


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    body = jwt.utils.base64url_decode(payload)
    changed = body.replace(b'"apple-1"', b'"apple-2"')
    return ".".join([header, jwt.utils.base64url_encode(changed).decode(), signature])


async def test_other_providers_and_unconfigured_apple_are_refused(
    apple_client: httpx.AsyncClient, client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    google = await apple_client.post(
        "/auth/v1/token?grant_type=id_token",
        json={"provider": "google", "id_token": fake_apple.id_token("a")},
    )
    assert_gotrue_error(google, 400, "provider_disabled")
    unconfigured = await sign_in(client, fake_apple.id_token("a"))
    assert_gotrue_error(unconfigured, 400, "provider_disabled")


async def test_key_rotation_is_picked_up(fake_apple: FakeApple) -> None:
    verifier = AppleIdTokenVerifier(
        ["com.rendio.app"], f"{fake_apple.url}/auth/keys", refetch_cooldown_seconds=0
    )
    assert (await verifier.verify(fake_apple.id_token("apple-1"), None)).sub == "apple-1"
    await verifier.verify(fake_apple.id_token("apple-1"), None)
    assert fake_apple.jwks_fetches == 1, "the key set is cached"
    fake_apple.signing_keys = {"apple-key-2": new_rsa_key()}
    rotated = await verifier.verify(fake_apple.id_token("apple-2", kid="apple-key-2"), None)
    assert rotated.sub == "apple-2"
    assert fake_apple.jwks_fetches == 2


async def test_unknown_key_ids_do_not_flood_apple(fake_apple: FakeApple) -> None:
    verifier = AppleIdTokenVerifier(["com.rendio.app"], f"{fake_apple.url}/auth/keys")
    await verifier.verify(fake_apple.id_token("apple-1"), None)
    for n in range(5):
        token = fake_apple.id_token("apple-1", kid=f"made-up-{n}", key=new_rsa_key())
        with pytest.raises(InvalidIdToken):
            await verifier.verify(token, None)
    assert fake_apple.jwks_fetches == 1


async def test_unreachable_keys_are_a_retryable_error(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    fake_apple.jwks_down = True
    response = await sign_in(apple_client, fake_apple.id_token("apple-1"))
    assert_gotrue_error(response, 503, "unexpected_failure")
    assert await count(db, "SELECT count(*) FROM users") == 0


async def test_a_guest_is_upgraded_in_place(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    guest = (await device_check(apple_client, "install-1", "phone-A")).json()
    response = await sign_in(
        apple_client, fake_apple.id_token("apple-001"), headers=bearer(guest["session"])
    )
    assert response.status_code == 200
    session = response.json()
    assert session["user"]["id"] == guest["user_id"]
    assert session["user"]["is_anonymous"] is False
    profile = (await apple_client.get("/functions/v1/user-profile", headers=bearer(session))).json()
    assert profile["credits_remaining"] == 10
    assert profile["is_guest"] is False
    # The guest's own session still works: it is the same user.
    still = await apple_client.get("/functions/v1/user-profile", headers=bearer(guest["session"]))
    assert still.status_code == 200
    # The device id was released: a later device-check makes a fresh guest, no new credits.
    fresh = (await device_check(apple_client, "install-1", "phone-A")).json()
    assert fresh["user_id"] != guest["user_id"]
    assert fresh["credits_remaining"] == 0
    assert await count(db, "SELECT count(*) FROM quota_log") == 1


async def test_an_expired_or_foreign_bearer_means_a_plain_sign_in(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    guest = (await device_check(apple_client, "install-1", "phone-A")).json()
    response = await sign_in(
        apple_client,
        fake_apple.id_token("apple-001"),
        headers={"Authorization": "Bearer public-anon-key"},
    )
    assert response.json()["user"]["id"] != guest["user_id"]


async def _guest_with_job(
    client: httpx.AsyncClient, db: AsyncSession, device: str, token: str
) -> dict[str, Any]:
    guest = (await device_check(client, device, token)).json()
    await db.execute(
        text(
            "INSERT INTO video_jobs (user_id, model_id, provider, prompt, settings, "
            "credits_used, deadline_at, status) "
            "SELECT :user, id, provider, 'a cat', '{}', 0, now(), 'completed' FROM models LIMIT 1"
        ),
        {"user": guest["user_id"]},
    )
    await db.commit()
    return guest


async def test_a_guest_merges_into_an_existing_apple_account(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    first = (await device_check(apple_client, "install-1", "phone-A")).json()
    owner = (
        await sign_in(
            apple_client, fake_apple.id_token("apple-001"), headers=bearer(first["session"])
        )
    ).json()
    guest = await _guest_with_job(apple_client, db, "install-2", "phone-B")

    merged = await sign_in(
        apple_client, fake_apple.id_token("apple-001"), headers=bearer(guest["session"])
    )
    assert merged.status_code == 200
    assert merged.json()["user"]["id"] == owner["user"]["id"]
    profile = (
        await apple_client.get("/functions/v1/user-profile", headers=bearer(merged.json()))
    ).json()
    assert profile["credits_remaining"] == 20
    assert (
        await count(db, "SELECT count(*) FROM video_jobs WHERE user_id = :u", u=owner["user"]["id"])
        == 1
    )
    moves = await db.execute(
        text("SELECT user_id, change, reason FROM quota_log WHERE reason LIKE 'merge%' ORDER BY id")
    )
    assert [tuple(row) for row in moves] == [
        (uuid.UUID(guest["user_id"]), -10, "merge_out"),
        (uuid.UUID(owner["user"]["id"]), 10, "merge_in"),
    ]
    closed = await apple_client.get("/functions/v1/user-profile", headers=bearer(guest["session"]))
    assert closed.status_code == 401
    assert await count(
        db, "SELECT merged_into FROM users WHERE id = :g", g=guest["user_id"]
    ) == uuid.UUID(owner["user"]["id"])


async def test_concurrent_merges_of_one_guest_happen_once(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    await sign_in(apple_client, fake_apple.id_token("apple-001"))
    guest = (await device_check(apple_client, "install-2", "phone-B")).json()
    token = fake_apple.id_token("apple-001")
    responses = await asyncio.gather(
        *(sign_in(apple_client, token, headers=bearer(guest["session"])) for _ in range(12))
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["user"]["id"] for r in responses}) == 1
    assert await count(db, "SELECT count(*) FROM quota_log WHERE reason = 'merge_in'") == 1
    assert (
        await count(db, "SELECT credits_remaining FROM users WHERE apple_sub = 'apple-001'") == 10
    )


async def test_concurrent_upgrades_of_two_guests_to_one_account(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple, db: AsyncSession
) -> None:
    """Two devices of one person sign in at once: one upgrades, the other merges into it."""
    a = (await device_check(apple_client, "install-1", "phone-A")).json()
    b = (await device_check(apple_client, "install-2", "phone-B")).json()
    token = fake_apple.id_token("apple-001")
    responses = await asyncio.gather(
        sign_in(apple_client, token, headers=bearer(a["session"])),
        sign_in(apple_client, token, headers=bearer(b["session"])),
    )
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["user"]["id"] for r in responses}) == 1
    assert (
        await count(db, "SELECT credits_remaining FROM users WHERE apple_sub = 'apple-001'") == 20
    )
    assert await count(db, "SELECT count(*) FROM users WHERE merged_into IS NOT NULL") == 1


async def test_a_changed_apple_email_is_kept(
    apple_client: httpx.AsyncClient, fake_apple: FakeApple
) -> None:
    first = await sign_in(apple_client, fake_apple.id_token("apple-9", email="old@example.com"))
    second = await sign_in(apple_client, fake_apple.id_token("apple-9", email="new@example.com"))
    assert second.status_code == 200, second.text
    assert second.json()["user"]["id"] == first.json()["user"]["id"]
    assert second.json()["user"]["email"] == "new@example.com"
    without = await sign_in(apple_client, fake_apple.id_token("apple-9", email=None))
    assert without.json()["user"]["email"] == "new@example.com"
