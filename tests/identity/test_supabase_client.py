"""The official `supabase` Python client against a live `rendio serve` process."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from supabase import Client, create_client
from supabase_auth.errors import AuthApiError
from supabase_functions.errors import FunctionsHttpError

from tests.fakes.apple import FakeApple
from tests.helpers.apple import CLIENT_ID
from tests.helpers.processes import LiveServer, service_env, start_server

ANON_KEY = "rendio-anon-key-for-tests"


@pytest.fixture
def server(clean_database: str, tmp_path: Path, fake_apple: FakeApple) -> Iterator[LiveServer]:
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_ANON_KEY=ANON_KEY,
        RENDIO_APPLE_CLIENT_IDS=CLIENT_ID,
        RENDIO_APPLE_JWKS_URL=f"{fake_apple.url}/auth/keys",
    )
    live = start_server(["--no-worker"], env, tmp_path / "server.log")
    yield live
    live.stop()


@pytest.fixture
def supabase(server: LiveServer) -> Iterator[Client]:
    client = create_client(server.base_url, ANON_KEY)
    yield client


def test_anonymous_sign_in_refresh_functions_and_sign_out(supabase: Client) -> None:
    signed_in = supabase.auth.sign_in_anonymously()
    assert signed_in.user is not None and signed_in.session is not None
    assert signed_in.user.is_anonymous is True
    first_refresh_token = signed_in.session.refresh_token

    refreshed = supabase.auth.refresh_session()
    assert refreshed.session is not None
    assert refreshed.session.refresh_token != first_refresh_token
    assert refreshed.user is not None and refreshed.user.id == signed_in.user.id

    fetched = supabase.auth.get_user()
    assert fetched is not None and fetched.user.id == signed_in.user.id

    profile = supabase.functions.invoke("user-profile", {"method": "GET", "responseType": "json"})
    assert profile["user_id"] == signed_in.user.id
    assert profile["credits_remaining"] == 0

    checked = supabase.functions.invoke(
        "device-check",
        {"body": {"device_id": "install-1", "device_token": "phone-A"}, "responseType": "json"},
    )
    assert checked["credits_remaining"] == 10
    assert checked["is_new"] is True

    with pytest.raises(FunctionsHttpError) as refused:
        supabase.functions.invoke("device-check", {"body": {"device_id": "install-1"}})
    assert refused.value.status == 422
    assert refused.value.message["code"] == "ERR_4013"

    current_refresh_token = refreshed.session.refresh_token
    supabase.auth.sign_out()
    assert supabase.auth.get_session() is None
    with pytest.raises(AuthApiError) as rejected:
        supabase.auth.refresh_session(current_refresh_token)
    assert rejected.value.status == 400
    assert rejected.value.code == "session_not_found"


def test_a_device_check_session_drives_the_client(supabase: Client) -> None:
    checked = supabase.functions.invoke(
        "device-check",
        {"body": {"device_id": "install-7", "device_token": "phone-B"}, "responseType": "json"},
    )
    session = checked["session"]
    supabase.auth.set_session(session["access_token"], session["refresh_token"])
    profile = supabase.functions.invoke("user-profile", {"method": "GET", "responseType": "json"})
    assert profile["user_id"] == checked["user_id"]
    assert profile["credits_remaining"] == 10
    refreshed = supabase.auth.refresh_session()
    assert refreshed.user is not None and refreshed.user.id == checked["user_id"]


def test_sign_in_with_apple_upgrades_the_guest(supabase: Client, fake_apple: FakeApple) -> None:
    checked = supabase.functions.invoke(
        "device-check",
        {"body": {"device_id": "install-8", "device_token": "phone-C"}, "responseType": "json"},
    )
    supabase.auth.set_session(
        checked["session"]["access_token"], checked["session"]["refresh_token"]
    )
    raw_nonce = "nonce-from-the-app"
    token = fake_apple.id_token(
        "apple-042", nonce_hash=hashlib.sha256(raw_nonce.encode()).hexdigest()
    )
    signed_in = supabase.auth.sign_in_with_id_token(
        {"provider": "apple", "token": token, "nonce": raw_nonce}
    )
    assert signed_in.user is not None
    assert signed_in.user.id == checked["user_id"]
    assert signed_in.user.is_anonymous is False
    profile = supabase.functions.invoke("user-profile", {"method": "GET", "responseType": "json"})
    assert profile["is_guest"] is False
    assert profile["credits_remaining"] == 10

    with pytest.raises(AuthApiError) as refused:
        supabase.auth.sign_in_with_id_token({"provider": "apple", "token": token, "nonce": "wrong"})
    assert refused.value.code == "bad_oidc_token"


def test_update_user_keeps_metadata(supabase: Client) -> None:
    signed_in = supabase.auth.sign_in_anonymously({"options": {"data": {"source": "store"}}})
    assert signed_in.user is not None
    assert signed_in.user.user_metadata == {"source": "store"}

    updated = supabase.auth.update_user({"data": {"name": "Ada", "prefs": {"hd": True}}})
    assert updated.user.id == signed_in.user.id
    assert updated.user.user_metadata == {"source": "store", "name": "Ada", "prefs": {"hd": True}}
    removed = supabase.auth.update_user({"data": {"source": None}})
    assert removed.user.user_metadata == {"name": "Ada", "prefs": {"hd": True}}

    fetched = supabase.auth.get_user()
    assert fetched is not None
    assert fetched.user.user_metadata == {"name": "Ada", "prefs": {"hd": True}}
    refreshed = supabase.auth.refresh_session()
    assert refreshed.user is not None
    assert refreshed.user.user_metadata == {"name": "Ada", "prefs": {"hd": True}}

    with pytest.raises(AuthApiError) as email:
        supabase.auth.update_user({"email": "ada@example.com", "data": {"name": "Bob"}})
    assert email.value.status == 422
    assert email.value.code == "email_provider_disabled"
    with pytest.raises(AuthApiError) as password:
        supabase.auth.update_user({"password": "a long enough password"})
    assert password.value.code == "email_provider_disabled"
    with pytest.raises(AuthApiError) as too_large:
        supabase.auth.update_user({"data": {"blob": "x" * 20_000}})
    assert too_large.value.status == 400
    assert too_large.value.code == "validation_failed"
    fetched = supabase.auth.get_user()
    assert fetched is not None
    assert fetched.user.user_metadata == {"name": "Ada", "prefs": {"hd": True}}


def test_a_missing_apikey_is_refused(server: LiveServer) -> None:
    client = create_client(server.base_url, "not-the-anon-key")
    with pytest.raises(AuthApiError) as refused:
        client.auth.sign_in_anonymously()
    assert refused.value.status == 401
    assert refused.value.code == "no_api_key"
    with pytest.raises(FunctionsHttpError) as functions:
        client.functions.invoke("get-models")
    assert functions.value.status == 401
    assert functions.value.message["code"] == "ERR_4016"
