"""Opaque history cursors: a keyset position the server can tell it issued.

A cursor is the last row's `(created_at, job_id)` plus an HMAC over it, the user and the
listing's filter, so a cursor that was forged, mangled, issued to another user or for another
filter is refused (422 `ERR_4013`) instead of answering rows or failing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from datetime import datetime

from rendio.platform.errors import ValidationFailed

_MAC_BYTES = 16


def _mac(secret: str, user_id: uuid.UUID, listing: str, position: str) -> bytes:
    message = f"history-cursor\n{user_id}\n{listing}\n{position}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:_MAC_BYTES]


def encode(
    secret: str, user_id: uuid.UUID, listing: str, created_at: datetime, job_id: uuid.UUID
) -> str:
    position = f"{created_at.isoformat()}|{job_id}"
    raw = position.encode() + _mac(secret, user_id, listing, position)  # the MAC: last bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _refuse() -> ValidationFailed:
    problem = "not a cursor of this listing; start again without one"
    return ValidationFailed({"fields": [{"field": "cursor", "problem": problem}]})


def decode(
    secret: str, user_id: uuid.UUID, listing: str, cursor: str
) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position, mac = raw[:-_MAC_BYTES].decode(), raw[-_MAC_BYTES:]
    except (binascii.Error, ValueError):
        raise _refuse() from None
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(
        mac, _mac(secret, user_id, listing, position)
    ):
        raise _refuse()
    created, _, job = position.partition("|")
    try:
        return datetime.fromisoformat(created), uuid.UUID(job)
    except ValueError:
        raise _refuse() from None
