"""Signed, expiring links to a job's stored files, issued afresh on every answer that shows a
job (get-video-status, history), so a link in a client is never older than its lifetime."""

from __future__ import annotations

from fastapi import Request

from rendio.generation.services import GenerationServices


class MediaLinks:
    def __init__(self, request: Request, services: GenerationServices) -> None:
        self._base = services.settings.public_url or str(request.base_url)
        self._storage = services.storage
        self._lifetime = services.settings.media_url_lifetime

    def __call__(self, key: str | None) -> str | None:
        return self._storage.link(key, self._base, self._lifetime) if key else None
