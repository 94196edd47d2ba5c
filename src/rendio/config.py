"""Typed settings, read from `RENDIO_*` environment variables and an optional `.env`.

Settings are validated once at start: an unknown `RENDIO_*` name or a bad value stops the
process with a message naming the setting, so a typo never silently falls back to a default.
Production (`RENDIO_ENV=prod`) refuses the conveniences that only make sense on a laptop.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from limits import parse
from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "RENDIO_"
# Variables the test harness and tooling read themselves; they are not service settings.
_RESERVED_PREFIXES = ("RENDIO_TEST_",)
_JWT_SECRET_FILE = "jwt_secret"  # noqa: S105 (a file name, not a secret)
_MIN_SECRET_LENGTH = 32
_ORIGIN = re.compile(r"[a-z][a-z0-9+.\-]*://[^/?#\s@]+", re.IGNORECASE)


AppStoreEnvironment = Literal["Production", "Sandbox", "Xcode", "LocalTesting"]
_SIGNED_ENVIRONMENTS: tuple[AppStoreEnvironment, ...] = ("Production", "Sandbox")


class SettingsError(Exception):
    """A setting is unknown, invalid or unsafe; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    env: Literal["dev", "prod"] = "dev"
    database_url: str | None = Field(
        default=None, description="PostgreSQL URL; unset means the embedded server."
    )
    listen_database_url: str | None = Field(
        default=None,
        description="Where the API's LISTEN connection goes (unset: RENDIO_DATABASE_URL); "
        "behind a transaction-mode pooler, a direct or session-mode URL.",
    )
    data_dir: Path = Path(".rendio")
    jwt_secret: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_header_bytes: int = Field(default=16_384, ge=1024, le=1_048_576)
    header_timeout: float = Field(
        default=10.0, gt=0, le=600, description="Seconds to deliver a request's headers."
    )
    body_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds to deliver a request's body."
    )
    keep_alive_timeout: int = Field(
        default=5, ge=1, le=600, description="Seconds an idle keep-alive connection stays open."
    )
    max_connections: int = Field(default=2048, ge=1, le=1_000_000)
    max_in_flight: int = Field(
        default=256, ge=1, le=100_000, description="Requests served at once; more get 503."
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    rest_max_rows: int = Field(
        default=1000, ge=1, le=100_000, description="Most rows one /rest/v1 read answers."
    )
    rest_statement_timeout_ms: int = Field(
        default=5000, ge=100, le=600_000, description="A /rest/v1 query running longer is cut."
    )
    realtime_max_connections: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Realtime sockets one process holds."
    )
    realtime_max_connections_per_ip: int = Field(
        default=500,
        ge=1,
        le=1_000_000,
        description="Realtime sockets one client address may hold in one process.",
    )
    realtime_max_channels: int = Field(
        default=100, ge=1, le=10_000, description="Channels one realtime socket may join."
    )
    realtime_send_queue: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Messages waiting for one slow socket before it is dropped.",
    )

    anon_key: SecretStr | None = Field(
        default=None, description="When set, every /functions/v1 and /auth/v1 call must send it."
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (comma-separated; `*` for any); "
        "unset means no CORS headers, which native apps do not need.",
    )
    access_token_lifetime: int = Field(
        default=3600,
        ge=60,
        le=86_400,
        description="Seconds an access JWT lives; below a minute clients would refresh nonstop.",
    )
    refresh_reuse_interval: int = Field(
        default=10, ge=0, le=3600, description="Seconds a rotated refresh token still works."
    )
    starter_credits: int = Field(default=10, ge=0, le=1_000_000)

    device_verifier: Literal["trust", "apple"] = "trust"
    apple_team_id: str | None = None
    devicecheck_key_id: str | None = None
    devicecheck_private_key: SecretStr | None = Field(
        default=None, description="The .p8 key's PEM text (ES256)."
    )
    devicecheck_environment: Literal["development", "production"] = "production"
    devicecheck_url: str | None = Field(
        default=None, description="Override the DeviceCheck host (tests, proxies)."
    )
    devicecheck_timeout: float = Field(default=5.0, gt=0, le=60)
    devicecheck_attempts: int = Field(default=3, ge=1, le=10)

    apple_client_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Bundle / service ids accepted as `aud` of Apple ID tokens (comma-separated).",
    )
    apple_jwks_url: str = "https://appleid.apple.com/auth/keys"

    products_file: Path | None = Field(
        default=None, description="Credit packs (YAML/JSON); unset means the packaged list."
    )
    appstore_bundle_id: str | None = Field(
        default=None, description="The app's bundle id; unset means purchases are refused."
    )
    appstore_app_apple_id: int | None = Field(default=None, ge=1)
    appstore_environments: Annotated[list[AppStoreEnvironment], NoDecode] = Field(
        default_factory=lambda: list(_SIGNED_ENVIRONMENTS),
        description="Environments whose transactions are accepted (comma-separated).",
    )
    appstore_root_certificates: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="Apple root CA certificate files, DER or PEM."
    )
    appstore_online_checks: bool = True

    public_url: str | None = Field(
        default=None,
        description="The service's external base URL, for media links (default: the request's).",
    )
    media_url_lifetime: int = Field(default=3600, ge=60, le=7 * 86_400)
    storage: Literal["local", "s3"] = Field(
        default="local",
        description="Where videos are kept: `<data dir>/media`, or an S3-compatible bucket.",
    )
    s3_bucket: str | None = Field(default=None, min_length=3, max_length=63)
    s3_endpoint_url: str | None = Field(
        default=None, description="An S3-compatible endpoint (MinIO, R2…); unset means AWS."
    )
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None

    worker_concurrency: int = Field(default=4, ge=1, le=100)
    worker_stalled_after: float = Field(
        default=30.0,
        ge=2,
        le=3600,
        description="Seconds without a heartbeat before a worker "
        "is presumed dead and its jobs are run again.",
    )
    job_stale_after: float = Field(
        default=120.0,
        ge=2,
        le=86_400,
        description="Seconds an unfinished job may go untouched "
        "before the sweeper queues it again.",
    )
    sweep_every: int = Field(default=15, ge=1, le=59, description="Sweeper period, seconds.")
    provider_timeout: float = Field(
        default=30.0, gt=0, le=300, description="Seconds one call to a provider's API may take."
    )
    provider_max_in_flight: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Jobs one provider works on at once, all workers together; others wait.",
    )
    provider_queue_timeout: float = Field(
        default=3600.0,
        ge=10,
        le=7 * 86_400,
        description="Seconds a job may wait for a provider slot before it is refunded.",
    )
    provider_retries: int = Field(default=3, ge=0, le=10)
    provider_retry_initial: float = Field(default=2.0, gt=0, le=60)
    provider_retry_max: float = Field(default=30.0, gt=0, le=600)
    poll_initial: float = Field(default=1.0, gt=0, le=60)
    poll_max: float = Field(default=15.0, gt=0, le=600)
    poll_max_with_webhooks: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="Longest wait between looks at a job whose provider calls back.",
    )
    result_max_bytes: int = Field(
        default=500_000_000, ge=1_000, description="Largest provider result copied into storage."
    )
    result_timeout: float = Field(
        default=300.0, gt=0, le=3600, description="Seconds to fetch one provider result."
    )

    apns_key_id: str | None = None
    apns_team_id: str | None = None
    apns_private_key: SecretStr | None = Field(
        default=None, description="The APNs .p8 key's PEM text (ES256)."
    )
    apns_topic: str | None = Field(default=None, description="The app's bundle id.")
    apns_url: str | None = Field(
        default=None,
        description="Another APNs host (a fake in tests; http:// speaks HTTP/2 without TLS).",
    )
    apns_timeout: float = Field(default=10.0, gt=0, le=120)
    push_attempts: int = Field(default=5, ge=1, le=20)

    media_retention_days: float = Field(
        default=7, gt=0, le=36_500, description="Days stored videos and thumbnails are kept."
    )
    deleted_job_retention_days: float = Field(
        default=7, gt=0, le=36_500, description="Days a soft-deleted job can be restored."
    )
    log_retention_days: float = Field(
        default=30, gt=0, le=36_500, description="Days webhook deliveries and errors are kept."
    )
    retention_batch: int = Field(default=500, ge=1, le=100_000)
    retention_max_batches: int = Field(default=100, ge=1, le=100_000)
    ops_log_interval: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between writes of the API's error_log rows and error counts.",
    )

    redis_url: str | None = Field(
        default=None, description="redis:// or rediss://; rate limits are shared through it."
    )
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=list,
        description="CIDRs of proxies whose X-Forwarded-For is believed (comma-separated).",
    )
    rate_limit_generate_video: str = "10/hour"
    rate_limit_update_credits: str = "30/hour"
    rate_limit_device_check: str = "20/hour"
    rate_limit_signup: str = "30/hour"
    rate_limit_token: str = "300/hour"  # noqa: S105 (a rate, not a secret)
    rate_limit_per_ip: str = "1200/minute"

    fal_key: SecretStr | None = None
    fal_queue_url: str = "https://queue.fal.run"
    fal_jwks_url: str = Field(
        default="https://rest.alpha.fal.ai/.well-known/jwks.json",
        description="fal's webhook signing keys (Ed25519, JWKS).",
    )
    openai_api_key: SecretStr | None = None
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="An OpenAI-compatible gateway serving /videos (OpenAI's own shut down).",
    )
    openai_webhook_secret: SecretStr | None = None
    runway_api_key: SecretStr | None = None
    runway_api_url: str = "https://api.dev.runwayml.com"
    runway_api_version: str = "2024-11-06"
    replicate_api_token: SecretStr | None = None
    replicate_api_url: str = "https://api.replicate.com"
    replicate_webhook_secret: SecretStr | None = Field(
        default=None, description="whsec_…; unset means it is fetched from Replicate."
    )

    @field_validator(
        "rate_limit_generate_video",
        "rate_limit_update_credits",
        "rate_limit_device_check",
        "rate_limit_signup",
        "rate_limit_token",
        "rate_limit_per_ip",
    )
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError("must look like 10/hour or 5 per minute") from None
        return value

    @property
    def rate_limits(self) -> dict[str, str]:
        """Policy name → rule, for the limiter."""
        return {
            "generate-video": self.rate_limit_generate_video,
            "update-credits": self.rate_limit_update_credits,
            "device-check": self.rate_limit_device_check,
            "signup": self.rate_limit_signup,
            "token": self.rate_limit_token,
            "per-ip": self.rate_limit_per_ip,
        }

    @field_validator(
        "apple_client_ids",
        "appstore_environments",
        "appstore_root_certificates",
        "trusted_proxies",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _split_client_ids(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Browsers send `Origin` as scheme://host[:port] in lower case, never with a path or a
        trailing slash; an entry that could never match is a typo, refused at start."""
        for origin in value:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin like https://app.example.com "
                    "(scheme and host, optional port, no path or trailing slash)"
                )
        return [origin.lower() for origin in value]

    @model_validator(mode="after")
    def _require_devicecheck_credentials(self) -> Settings:
        if self.device_verifier == "apple":
            missing = [
                name
                for name in ("apple_team_id", "devicecheck_key_id", "devicecheck_private_key")
                if getattr(self, name) is None
            ]
            if missing:
                names = ", ".join(ENV_PREFIX + name.upper() for name in missing)
                raise ValueError(f"RENDIO_DEVICE_VERIFIER=apple needs {names}")
        return self

    @model_validator(mode="after")
    def _require_all_apns_settings(self) -> Settings:
        names = ("apns_key_id", "apns_team_id", "apns_private_key", "apns_topic")
        given = [name for name in names if getattr(self, name) is not None]
        if given and len(given) != len(names):
            missing = ", ".join(ENV_PREFIX + n.upper() for n in names if n not in given)
            raise ValueError(f"push needs every APNs setting; missing {missing}")
        return self

    @model_validator(mode="after")
    def _require_a_bucket_for_s3(self) -> Settings:
        if self.storage == "s3" and self.s3_bucket is None:
            raise ValueError("RENDIO_STORAGE=s3 needs RENDIO_S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "RENDIO_S3_ACCESS_KEY_ID and RENDIO_S3_SECRET_ACCESS_KEY go together "
                "(leave both unset to use the AWS environment or instance role)"
            )
        return self

    @property
    def push_configured(self) -> bool:
        return self.apns_key_id is not None

    @model_validator(mode="after")
    def _require_app_apple_id_for_production(self) -> Settings:
        if (
            self.appstore_bundle_id
            and "Production" in self.appstore_environments
            and self.appstore_app_apple_id is None
        ):
            raise ValueError(
                "RENDIO_APPSTORE_APP_APPLE_ID is required to accept Production transactions"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env != "prod":
            return self
        if self.jwt_secret is None:
            raise ValueError("RENDIO_JWT_SECRET must be set when RENDIO_ENV=prod")
        if len(self.jwt_secret.get_secret_value()) < _MIN_SECRET_LENGTH:
            raise ValueError(
                f"RENDIO_JWT_SECRET must be at least {_MIN_SECRET_LENGTH} characters in prod"
            )
        if self.device_verifier == "trust":
            raise ValueError("RENDIO_DEVICE_VERIFIER=trust is dev-only; use apple in prod")
        if self.database_url is None:
            raise ValueError("RENDIO_DATABASE_URL must be set when RENDIO_ENV=prod")
        unsigned = sorted(set(self.appstore_environments) & {"Xcode", "LocalTesting"})
        if unsigned:
            raise ValueError(
                f"RENDIO_APPSTORE_ENVIRONMENTS: {', '.join(unsigned)} are unsigned, dev only"
            )
        if self.appstore_bundle_id and not self.appstore_root_certificates:
            raise ValueError("RENDIO_APPSTORE_ROOT_CERTIFICATES must be set when RENDIO_ENV=prod")
        if self.appstore_bundle_id and not self.appstore_online_checks:
            # Without OCSP the library dates the chain by the payload's own signedDate, so a
            # revoked or expired signing certificate would still verify.
            raise ValueError("RENDIO_APPSTORE_ONLINE_CHECKS=false is dev-only")
        return self

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def provider_configured(self, provider: str) -> bool:
        """Whether a provider can take work: `local` always, the others once keyed."""
        if provider == "local":
            return True
        keys = {
            "fal": self.fal_key,
            "openai": self.openai_api_key,
            "runway": self.runway_api_key,
            "replicate": self.replicate_api_token,
        }
        return keys.get(provider) is not None

    def resolved_jwt_secret(self) -> str:
        """The configured secret, or in dev one generated once and kept (0600) in the data dir."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / _JWT_SECRET_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip()
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def _unknown_variables() -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX)
        and name.upper() not in known
        and not name.upper().startswith(_RESERVED_PREFIXES)
    )


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "settings"
        name = field.upper()
        if not name.startswith(ENV_PREFIX):
            name = ENV_PREFIX + name if item["loc"] else field
        lines.append(f"{name}: {item['msg']}")
    return "; ".join(lines)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and overrides), or raise SettingsError."""
    unknown = _unknown_variables()
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # names and values are checked by pydantic
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
