"""`user_metadata`: GoTrue's merge rule, and what the jsonb column will hold.

`updateUser({data})` merges top-level keys into what is stored and removes a key sent as null,
as GoTrue does. The result is bounded (`MAX_BYTES` of compact UTF-8 JSON) because it travels
with every user object and session the service answers. Values PostgreSQL's jsonb cannot
hold — NUL characters, NaN and Infinity (which Python's JSON parser accepts), lone
surrogates — are refused here, before any write, instead of failing inside the database.

The access token's `user_metadata` claim stays `{}`: 16 KiB in a JWT would push the
`Authorization` header past what proxies (and our own header limit) accept. Clients read the
metadata from the user object, which is where supabase-py and supabase-swift look.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_BYTES = 16 * 1024
_ESCAPED_NUL = "\\u0000"


class MetadataRefused(ValueError):
    """The metadata cannot be stored; the message says why (safe to show)."""


def merged(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `changes` applied: a null value removes its key, any other replaces it."""
    result = dict(current)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def check_storable(metadata: Mapping[str, Any]) -> None:
    """Raise MetadataRefused unless `metadata` fits the column and the size bound."""
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        size = len(text.encode("utf-8"))
    except (ValueError, RecursionError):  # NaN/Infinity; a lone surrogate (UnicodeEncodeError)
        raise MetadataRefused(
            "must be plain JSON: no NaN, Infinity or unpaired surrogates"
        ) from None
    # json.dumps writes every NUL as \u0000, so only then is the slower walk needed.
    if _ESCAPED_NUL in text and _holds_nul(metadata):
        raise MetadataRefused("text must not contain NUL characters")
    if size > MAX_BYTES:
        raise MetadataRefused(f"must be at most {MAX_BYTES} bytes as JSON (would be {size})")


def _holds_nul(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
