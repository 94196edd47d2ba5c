"""Signed, expiring links to a job's stored files, issued afresh on every answer that shows a
job (get-video-status, history, /rest/v1, realtime), so a link in a client is never older than
its lifetime."""

from __future__ import annotations

from functools import cached_property

from starlette.requests import HTTPConnection

from rendio.generation.services import GenerationServices

_HTTP_SCHEME = {"ws": "http", "wss": "https"}


class MediaLinks:
    def __init__(self, connection: HTTPConnection, services: GenerationServices) -> None:
        self._connection = connection
        self._public_url = services.settings.public_url
        self._storage = services.storage
        self._lifetime = services.settings.media_url_lifetime

    @cached_property
    def _base(self) -> str:
        """Worked out on the first link only: most answers (a job still running) have none."""
        if self._public_url:
            return self._public_url
        base = self._connection.base_url
        # A websocket's own URL is ws(s)://; its media are fetched over http(s).
        return str(base.replace(scheme=_HTTP_SCHEME.get(base.scheme, base.scheme)))

    def __call__(self, key: str | None) -> str | None:
        return self._storage.link(key, self._base, self._lifetime) if key else None
