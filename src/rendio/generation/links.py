"""Signed, expiring links to a job's stored files, issued afresh on every answer that shows a
job (get-video-status, history, /rest/v1, realtime), so a link in a client is never older than
its lifetime."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from rendio.generation.services import GenerationServices

_HTTP_SCHEME = {"ws": "http", "wss": "https"}


class MediaLinks:
    def __init__(self, connection: HTTPConnection, services: GenerationServices) -> None:
        base = connection.base_url
        # A websocket's own URL is ws(s)://; its media are fetched over http(s).
        base = base.replace(scheme=_HTTP_SCHEME.get(base.scheme, base.scheme))
        self._base = services.settings.public_url or str(base)
        self._storage = services.storage
        self._lifetime = services.settings.media_url_lifetime

    def __call__(self, key: str | None) -> str | None:
        return self._storage.link(key, self._base, self._lifetime) if key else None
