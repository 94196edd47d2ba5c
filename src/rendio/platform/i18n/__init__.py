"""Localized error messages (en, tr, es) chosen from Accept-Language.

Catalogs are JSON files beside this module, one per language, keyed by error code. They are
read once at import: a missing file or key is a packaging bug that tests catch.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

LANGUAGES = ("en", "tr", "es")
DEFAULT_LANGUAGE = "en"
_DIR = Path(__file__).parent


@lru_cache(maxsize=1)
def catalogs() -> dict[str, dict[str, str]]:
    return {
        lang: json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES
    }


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value)))
            except ValueError:
                return 0.0
    return 1.0


def negotiate(accept_language: str | None) -> str:
    """Pick the best supported language for an Accept-Language header (RFC 9110 q-values).

    Region tags fall back to their primary language (`tr-TR` → `tr`); `*` means the default.
    Ties keep the client's order. Anything unparseable yields the default.
    """
    if not accept_language:
        return DEFAULT_LANGUAGE
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate(accept_language[:1000].split(",")):
        tag, *params = item.split(";")
        primary = tag.strip().lower().split("-")[0]
        if primary == "*":
            primary = DEFAULT_LANGUAGE
        quality = _quality(params)
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE


class _KeepMissing(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def message(code: str, language: str, details: dict[str, Any] | None = None) -> str:
    """The message for `code` in `language`, placeholders filled from `details`."""
    table = catalogs().get(language) or catalogs()[DEFAULT_LANGUAGE]
    template = table.get(code) or catalogs()[DEFAULT_LANGUAGE][code]
    return template.format_map(_KeepMissing(details or {}))
