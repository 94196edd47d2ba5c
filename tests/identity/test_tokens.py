"""Access tokens: what we mint is what Supabase clients expect; forgeries are refused."""

import base64
import json
import time
import uuid

import jwt
import pytest

from rendio.identity.tokens import InvalidToken, mint_access_token, verify_access_token

SECRET = "s" * 64
USER = uuid.uuid4()
SESSION = uuid.uuid4()


def mint(**overrides: object) -> str:
    values: dict = {
        "issuer": "http://127.0.0.1:8000/auth/v1",
        "user_id": USER,
        "session_id": SESSION,
        "is_anonymous": True,
    }
    values.update(overrides)
    return mint_access_token(SECRET, **values)[0]


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_round_trip_and_claims() -> None:
    token, expires_at = mint_access_token(
        SECRET, issuer="iss", user_id=USER, session_id=SESSION, is_anonymous=True, now=1000
    )
    assert expires_at == 1000 + 3600
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "authenticated" and isinstance(claims["aud"], str)
    assert claims["role"] == "authenticated"
    assert claims["sub"] == str(USER)
    assert claims["session_id"] == str(SESSION)
    assert claims["is_anonymous"] is True
    for name in ("iss", "exp", "iat", "aal", "amr", "email", "app_metadata", "user_metadata"):
        assert name in claims
    verified = verify_access_token(SECRET, mint())
    assert (verified.user_id, verified.session_id, verified.is_anonymous) == (USER, SESSION, True)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(InvalidToken):
        verify_access_token("another-secret-" * 4, mint())


def test_alg_none_is_refused() -> None:
    claims = jwt.decode(mint(), options={"verify_signature": False})
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, forged)


def test_other_algorithm_with_the_same_secret_is_refused() -> None:
    claims = jwt.decode(mint(), options={"verify_signature": False})
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, jwt.encode(claims, SECRET, algorithm="HS512"))


def test_expired_is_refused() -> None:
    old = mint_access_token(
        SECRET, issuer="i", user_id=USER, session_id=SESSION, is_anonymous=False,
        now=int(time.time()) - 7200,
    )[0]  # fmt: skip
    with pytest.raises(InvalidToken, match="expired"):
        verify_access_token(SECRET, old)


def test_wrong_audience_and_missing_claims_are_refused() -> None:
    claims = jwt.decode(mint(), options={"verify_signature": False})
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, jwt.encode(claims | {"aud": "anon"}, SECRET, "HS256"))
    without_session = {k: v for k, v in claims.items() if k != "session_id"}
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, jwt.encode(without_session, SECRET, "HS256"))
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, jwt.encode(claims | {"sub": "not-a-uuid"}, SECRET, "HS256"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x", "é.é.é"])
def test_garbage_is_refused(garbage: str) -> None:
    with pytest.raises(InvalidToken):
        verify_access_token(SECRET, garbage)


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified tokens are remembered; their expiry is checked on every use all the same."""
    from rendio.identity import tokens
    from rendio.identity.tokens import ExpiredToken

    token = mint(lifetime_seconds=60)
    claims = verify_access_token(SECRET, token)
    assert verify_access_token(SECRET, token) == claims  # from memory this time
    later = time.time() + 61
    monkeypatch.setattr(tokens.time, "time", lambda: later)
    with pytest.raises(ExpiredToken):
        verify_access_token(SECRET, token)
    assert verify_access_token(SECRET, token, leeway_seconds=5) == claims


def test_a_forged_token_is_refused_every_time() -> None:
    forged = mint()[:-4] + "AAAA"
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verify_access_token(SECRET, forged)
    with pytest.raises(InvalidToken):
        verify_access_token("another-secret-" + "x" * 40, mint())
