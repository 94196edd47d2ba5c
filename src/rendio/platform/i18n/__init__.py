"""Localized error messages (en, tr, es) chosen from Accept-Language.

Catalogs are JSON files beside this module, one per language, keyed by error code. They are
read once at import: a missing file or key is a packaging bug that tests catch.

An entry is a template (`"... {placeholder} ..."`, filled from the error's details), or, when a
placeholder is a count, an object that says how to write that count in each CLDR plural
category of the language:

    "ERR_4004": {
      "text": "Please try again in {retry_after}.",
      "plural": {"retry_after": {"one": "{retry_after} second", "other": "{retry_after} seconds"}}
    }

The count's category comes from Babel (CLDR rules: English and Turkish have `one` and `other`,
Spanish also `many`); a category an entry leaves out is written as `other`, and so is a count
the details do not carry (its placeholder then stays visible, as any missing placeholder does).
Turkish nouns stay singular after a number, so its forms read the same: they are written out
all the same, so that every count placeholder is declared in every language.

`fields.<lang>.json` holds the texts of the per-field problems of a validation failure (ERR_4013),
keyed by pydantic's error type and filled from the error's context, in the same entry format.
English has no such file: pydantic's own English texts are used, and so is any type a language
does not list.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale

LANGUAGES = ("en", "tr", "es")
DEFAULT_LANGUAGE = "en"
_DIR = Path(__file__).parent

Entry = str | dict[str, Any]


@lru_cache(maxsize=1)
def catalogs() -> dict[str, dict[str, Entry]]:
    return {
        lang: json.loads((_DIR / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES
    }


@lru_cache(maxsize=1)
def field_catalogs() -> dict[str, dict[str, Entry]]:
    """Per-field problem texts by language (none for English: pydantic's own are used)."""
    return {
        lang: json.loads((_DIR / f"fields.{lang}.json").read_text(encoding="utf-8"))
        for lang in LANGUAGES
        if lang != DEFAULT_LANGUAGE
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


@lru_cache(maxsize=len(LANGUAGES))
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def plural_category(count: Any, language: str) -> str:
    """The CLDR plural category (`zero`, `one`, `two`, `few`, `many`, `other`) of `count`."""
    if isinstance(count, bool):
        return "other"
    if not isinstance(count, int | float | Decimal):
        try:
            count = Decimal(str(count))
        except InvalidOperation:
            return "other"
    try:
        return str(_locale(language).plural_form(count))
    except (ValueError, TypeError, ArithmeticError):
        return "other"  # NaN, infinity


def render(entry: Entry, language: str, values: dict[str, Any]) -> str:
    """An entry (a template, or a template with plural forms) filled from `values`."""
    if isinstance(entry, str):
        return entry.format_map(_KeepMissing(values))
    filled = dict(values)
    for name, forms in entry.get("plural", {}).items():
        category = plural_category(values[name], language) if name in values else "other"
        phrase = forms.get(category, forms["other"])
        filled[name] = phrase.format_map(_KeepMissing(values))
    text: str = entry["text"]
    return text.format_map(_KeepMissing(filled))


def message(code: str, language: str, details: dict[str, Any] | None = None) -> str:
    """The message for `code` in `language`, placeholders filled from `details`."""
    table = catalogs().get(language) or catalogs()[DEFAULT_LANGUAGE]
    if code in table:
        return render(table[code], language, details or {})
    return render(catalogs()[DEFAULT_LANGUAGE][code], DEFAULT_LANGUAGE, details or {})


def field_problem(error_type: str, language: str, context: dict[str, Any]) -> str | None:
    """A field problem's text in `language`, or None where the catalog has none (the caller
    then keeps pydantic's English text)."""
    entry = field_catalogs().get(language, {}).get(error_type)
    if entry is None:
        return None
    return render(entry, language, context)
