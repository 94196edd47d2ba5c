"""Where finished videos live: a storage interface, a local directory or an S3-compatible
bucket, and signed, expiring links to what is stored.

Provider URLs expire, so results are copied here. Jobs keep storage *keys*; a link is signed each
time one is handed out, so links are unguessable, expire on their own, and can be re-issued
without touching the database. Local files are served by `/media` behind an HMAC of key and
expiry with the service secret; bucket objects by the bucket itself, behind a presigned SigV4
GET URL — so every API host hands out working links for the same media.

The S3 client is obstore (docs/decisions.md: as fast as aioboto3 to upload, 20x faster to
presign, which every history page does 40 times).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

import obstore
import obstore.exceptions
from obstore.store import S3Store

from rendio.config import Settings

if TYPE_CHECKING:
    from obstore.store import S3Config  # a TypedDict that exists for type checkers only

MEDIA_PREFIX = "/media"


class Storage(Protocol):
    async def put_file(self, key: str, source: Path) -> None:
        """Store `source` under `key` (replacing what was there)."""
        ...

    async def delete(self, keys: list[str]) -> None:
        """Remove these keys; missing ones are fine."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file behind a key when it is served by this process, else None."""
        ...

    def link(self, key: str, base_url: str, lifetime_seconds: int) -> str:
        """A URL that fetches `key` for `lifetime_seconds` (`base_url`: this service's)."""
        ...


class LocalStorage:
    """A directory (default `<data dir>/media`); keys are relative paths inside it, served by
    `/media` to holders of a link signed with `secret`."""

    def __init__(self, root: Path, secret: str) -> None:
        self.root = root.resolve()
        self._secret = secret

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"storage key escapes the media root: {key!r}")
        return path

    async def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            shutil.copyfile(source, partial)
            partial.replace(target)  # readers never see half a file

        await asyncio.to_thread(copy)

    async def delete(self, keys: list[str]) -> None:
        def remove() -> None:
            for key in keys:
                path = self._path(key)
                path.unlink(missing_ok=True)
                folder = path.parent
                while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
                    folder = folder.parent

        await asyncio.to_thread(remove)

    def local_path(self, key: str) -> Path | None:
        try:
            path = self._path(key)
            return path if path.is_file() else None
        except (ValueError, OSError):  # escapes the root, or a name the filesystem refuses
            return None

    def link(self, key: str, base_url: str, lifetime_seconds: int) -> str:
        return signed_url(base_url, self._secret, key, lifetime_seconds)


class S3Storage:
    """An S3-compatible bucket. With an endpoint (MinIO, R2, a test server) requests use path
    style, which every such server understands; without one, AWS's virtual-hosted style.
    Failures are OSError, like the local directory's, so callers handle one kind."""

    def __init__(self, settings: Settings) -> None:
        assert settings.s3_bucket is not None  # checked by Settings
        endpoint = settings.s3_endpoint_url
        config: S3Config = {"region": settings.s3_region}
        if endpoint is not None:
            config["endpoint"] = endpoint
            config["virtual_hosted_style_request"] = False
        if settings.s3_access_key_id is not None and settings.s3_secret_access_key is not None:
            config["access_key_id"] = settings.s3_access_key_id
            config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
        self._store = S3Store(
            settings.s3_bucket,
            config=config,
            client_options={"allow_http": bool(endpoint and endpoint.startswith("http://"))},
        )

    async def put_file(self, key: str, source: Path) -> None:
        # An object appears whole or not at all (a multipart upload completes atomically).
        try:
            await obstore.put_async(self._store, key, source)
        except obstore.exceptions.BaseError as error:
            raise OSError(f"storing {key} failed: {error}") from None

    async def delete(self, keys: list[str]) -> None:
        if not keys:
            return
        try:
            await obstore.delete_async(self._store, keys)
        except obstore.exceptions.BaseError as error:
            raise OSError(f"deleting from the bucket failed: {error}") from None

    def local_path(self, key: str) -> Path | None:
        return None

    def link(self, key: str, base_url: str, lifetime_seconds: int) -> str:
        return obstore.sign(self._store, "GET", key, timedelta(seconds=lifetime_seconds))


def build_storage(settings: Settings, secret: str) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.data_dir / "media", secret)


def _signature(secret: str, key: str, expires: int) -> str:
    message = f"{key}\n{expires}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_url(base_url: str, secret: str, key: str, lifetime_seconds: int) -> str:
    expires = int(time.time()) + lifetime_seconds
    signature = _signature(secret, key, expires)
    return f"{base_url.rstrip('/')}{MEDIA_PREFIX}/{quote(key)}?expires={expires}&sig={signature}"


def valid_signature(secret: str, key: str, expires: int, signature: str) -> bool:
    if expires < time.time():
        return False
    return hmac.compare_digest(
        _signature(secret, key, expires).encode(), signature.encode("utf-8", "replace")
    )
