"""Where finished videos live: a storage interface, the local-directory implementation, and
signed, expiring media URLs.

Provider URLs expire, so results are copied here. Jobs keep storage *keys*; a URL is signed each
time one is handed out (HMAC of key and expiry with the service secret), so links are
unguessable, expire on their own, and can be re-issued without touching the database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import shutil
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

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


class LocalStorage:
    """A directory (default `<data dir>/media`); keys are relative paths inside it."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

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
