"""`/media/<key>`: a stored file, for whoever holds an unexpired signed link."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from rendio.platform.errors import NotFound
from rendio.platform.services import CoreServices, services_of
from rendio.platform.storage import MEDIA_PREFIX, valid_signature

_CONTENT_TYPES = {".mp4": "video/mp4", ".jpg": "image/jpeg", ".png": "image/png"}

router = APIRouter(tags=["media"])


@router.get(MEDIA_PREFIX + "/{key:path}", include_in_schema=False)
async def media(request: Request, key: str, expires: int = 0, sig: str = "") -> FileResponse:
    """A stored file, for whoever holds an unexpired signed link (else 404: never leak)."""
    services = services_of(request.app.state, CoreServices)
    if not valid_signature(services.secret, key, expires, sig):
        raise NotFound({})
    path = services.storage.local_path(key)
    if path is None:
        raise NotFound({})
    media_type = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private"})
