import os
import stat
from pathlib import Path

import pytest

from rendio.config import SettingsError, load_settings
from tests.helpers.processes import run_cli


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("RENDIO_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_are_a_working_dev_setup() -> None:
    settings = load_settings()
    assert settings.env == "dev"
    assert settings.embedded
    assert settings.port == 8000
    assert settings.max_body_bytes == 1_000_000


def test_unknown_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_DATABSE_URL", "postgresql://x/y")
    with pytest.raises(SettingsError, match="RENDIO_DATABSE_URL"):
        load_settings()


def test_invalid_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_PORT", "eighty")
    with pytest.raises(SettingsError, match="RENDIO_PORT"):
        load_settings()
    monkeypatch.setenv("RENDIO_PORT", "8000")
    monkeypatch.setenv("RENDIO_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="RENDIO_LOG_FORMAT"):
        load_settings()


def test_unknown_key_in_dotenv_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RENDIO_PORT=9000\nRENDIO_NOT_A_THING=1\n")
    with pytest.raises(SettingsError, match="RENDIO_NOT_A_THING"):
        load_settings()


def test_dotenv_values_are_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RENDIO_PORT=9001\n")
    assert load_settings().port == 9001


def test_prod_refuses_unsafe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_ENV", "prod")
    with pytest.raises(SettingsError, match="RENDIO_JWT_SECRET"):
        load_settings()
    monkeypatch.setenv("RENDIO_JWT_SECRET", "short")
    with pytest.raises(SettingsError, match="at least 32"):
        load_settings()
    monkeypatch.setenv("RENDIO_JWT_SECRET", "s" * 40)
    with pytest.raises(SettingsError, match="RENDIO_DEVICE_VERIFIER=trust"):
        load_settings()
    monkeypatch.setenv("RENDIO_DEVICE_VERIFIER", "apple")
    with pytest.raises(SettingsError, match="RENDIO_DEVICECHECK_PRIVATE_KEY"):
        load_settings()
    monkeypatch.setenv("RENDIO_APPLE_TEAM_ID", "TEAM123456")
    monkeypatch.setenv("RENDIO_DEVICECHECK_KEY_ID", "KEY1234567")
    monkeypatch.setenv("RENDIO_DEVICECHECK_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----...")
    with pytest.raises(SettingsError, match="RENDIO_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("RENDIO_DATABASE_URL", "postgresql://db.example/rendio")
    assert load_settings().env == "prod"


def test_app_store_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_APPSTORE_BUNDLE_ID", "com.rendio.app")
    with pytest.raises(SettingsError, match="RENDIO_APPSTORE_APP_APPLE_ID"):
        load_settings()
    monkeypatch.setenv("RENDIO_APPSTORE_ENVIRONMENTS", "Sandbox,Xcode")
    assert load_settings().appstore_environments == ["Sandbox", "Xcode"]
    monkeypatch.setenv("RENDIO_APPSTORE_ENVIRONMENTS", "Sandbox,Staging")
    with pytest.raises(SettingsError, match="RENDIO_APPSTORE_ENVIRONMENTS"):
        load_settings()


def test_prod_refuses_unsigned_app_store_environments_and_missing_roots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RENDIO_ENV": "prod",
        "RENDIO_JWT_SECRET": "s" * 40,
        "RENDIO_DATABASE_URL": "postgresql://db.example/rendio",
        "RENDIO_DEVICE_VERIFIER": "apple",
        "RENDIO_APPLE_TEAM_ID": "TEAM123456",
        "RENDIO_DEVICECHECK_KEY_ID": "KEY1234567",
        "RENDIO_DEVICECHECK_PRIVATE_KEY": "pem",
        "RENDIO_APPSTORE_BUNDLE_ID": "com.rendio.app",
        "RENDIO_APPSTORE_APP_APPLE_ID": "123",
        "RENDIO_APPSTORE_ENVIRONMENTS": "Production,Xcode",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match="Xcode are unsigned"):
        load_settings()
    monkeypatch.setenv("RENDIO_APPSTORE_ENVIRONMENTS", "Production,Sandbox")
    with pytest.raises(SettingsError, match="RENDIO_APPSTORE_ROOT_CERTIFICATES"):
        load_settings()
    monkeypatch.setenv("RENDIO_APPSTORE_ROOT_CERTIFICATES", "/etc/apple/AppleRootCA-G3.cer")
    monkeypatch.setenv("RENDIO_APPSTORE_ONLINE_CHECKS", "false")
    with pytest.raises(SettingsError, match="RENDIO_APPSTORE_ONLINE_CHECKS"):
        load_settings()
    monkeypatch.delenv("RENDIO_APPSTORE_ONLINE_CHECKS")
    assert load_settings().appstore_environments == ["Production", "Sandbox"]


def test_apple_client_ids_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_APPLE_CLIENT_IDS", "com.rendio.app, com.rendio.web ,")
    assert load_settings().apple_client_ids == ["com.rendio.app", "com.rendio.web"]


def test_dev_jwt_secret_is_generated_once_with_private_mode(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    first = settings.resolved_jwt_secret()
    assert len(first) >= 32
    path = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_settings(data_dir=tmp_path / "data").resolved_jwt_secret() == first


def test_configured_secret_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RENDIO_JWT_SECRET", "x" * 40)
    settings = load_settings(data_dir=tmp_path / "data")
    assert settings.resolved_jwt_secret() == "x" * 40
    assert not (tmp_path / "data" / "jwt_secret").exists()


def test_provider_is_configured_by_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().provider_configured("local")
    assert not load_settings().provider_configured("fal")
    monkeypatch.setenv("RENDIO_FAL_KEY", "key-123")
    assert load_settings().provider_configured("fal")
    assert not load_settings().provider_configured("nonexistent")


def test_cors_origins_are_a_checked_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().cors_origins == []
    monkeypatch.setenv("RENDIO_CORS_ORIGINS", "")
    assert load_settings().cors_origins == []
    monkeypatch.setenv(
        "RENDIO_CORS_ORIGINS",
        "https://App.Example.com, http://localhost:5173,capacitor://localhost",
    )
    assert load_settings().cors_origins == [
        "https://app.example.com",
        "http://localhost:5173",
        "capacitor://localhost",
    ]
    monkeypatch.setenv("RENDIO_CORS_ORIGINS", "*")
    assert load_settings().cors_origins == ["*"]
    for never_matches in ["https://app.example.com/", "app.example.com", "https://a.com/path"]:
        monkeypatch.setenv("RENDIO_CORS_ORIGINS", f"https://ok.example.com,{never_matches}")
        with pytest.raises(SettingsError, match="RENDIO_CORS_ORIGINS"):
            load_settings()


def test_access_tokens_live_at_least_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDIO_ACCESS_TOKEN_LIFETIME", "59")
    with pytest.raises(SettingsError, match="RENDIO_ACCESS_TOKEN_LIFETIME"):
        load_settings()
    # The server refuses to start, naming the setting (before it looks for a database).
    started = run_cli(
        "postgresql://nowhere.invalid/rendio", "serve", RENDIO_ACCESS_TOKEN_LIFETIME="59"
    )
    assert started.returncode == 2, started.stderr
    assert "RENDIO_ACCESS_TOKEN_LIFETIME" in started.stderr
    monkeypatch.setenv("RENDIO_ACCESS_TOKEN_LIFETIME", "60")
    assert load_settings().access_token_lifetime == 60
    monkeypatch.setenv("RENDIO_ACCESS_TOKEN_LIFETIME", "86401")
    with pytest.raises(SettingsError, match="RENDIO_ACCESS_TOKEN_LIFETIME"):
        load_settings()
