"""The one way validation errors become words: a list of `{"field", "problem"}`.

The problem reads in the client's language where the i18n field catalog knows pydantic's error
type (missing, too long, wrong type, not one of the choices, out of range, extra, bad URL or
UUID, ...); anything else, and English, keeps pydantic's own text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from babel.lists import format_list
from babel.numbers import format_decimal

from rendio.platform import i18n

# pydantic writes the choices of an enum or literal as `'a', 'b' or 'c'`: each item a repr.
_CHOICE = r"(?:'[^']*'|\"[^\"]*\"|[\w.+-]+)"
_CHOICES = re.compile(rf"({_CHOICE}(?:, {_CHOICE})*) or ({_CHOICE})")


def _choices(expected: str, language: str) -> str:
    """pydantic's English list of choices, joined the language's way (`'a', 'b' veya 'c'`)."""
    matched = _CHOICES.fullmatch(expected)
    if matched is None:
        return expected
    items = [*matched.group(1).split(", "), matched.group(2)]
    return str(format_list(items, style="or", locale=language))


def problem_text(item: Mapping[str, Any], language: str = i18n.DEFAULT_LANGUAGE) -> str:
    """One pydantic error's problem, in `language` when the field catalog has its type."""
    english = str(item.get("msg", "invalid"))
    if language == i18n.DEFAULT_LANGUAGE:
        return english
    context = {
        # Bounds of float fields (`gt=0` arrives as 0.0): written the language's way.
        name: format_decimal(value, locale=language) if isinstance(value, float) else value
        for name, value in (item.get("ctx") or {}).items()
    }
    if "expected" in context:
        context["expected"] = _choices(str(context["expected"]), language)
    localized = i18n.field_problem(str(item.get("type", "")), language, context)
    return english if localized is None else localized


def field_problems(
    errors: Sequence[Mapping[str, Any]],
    *,
    root: str = "body",
    language: str = i18n.DEFAULT_LANGUAGE,
) -> list[dict[str, str]]:
    """Each error of a pydantic (or FastAPI request) validation as `{"field": "a.b",
    "problem": "..."}`; `root` names an error of the whole document."""
    return [
        {
            "field": ".".join(str(part) for part in item.get("loc", ())) or root,
            "problem": problem_text(item, language),
        }
        for item in errors
    ]


def describe(problems: Sequence[Mapping[str, str]]) -> str:
    return "; ".join(f"{item['field']}: {item['problem']}" for item in problems)
