"""The one way validation errors become words: a list of `{"field", "problem"}`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def field_problems(
    errors: Sequence[Mapping[str, Any]], *, root: str = "body"
) -> list[dict[str, str]]:
    """Each error of a pydantic (or FastAPI request) validation as `{"field": "a.b",
    "problem": "..."}`; `root` names an error of the whole document."""
    return [
        {
            "field": ".".join(str(part) for part in item.get("loc", ())) or root,
            "problem": str(item.get("msg", "invalid")),
        }
        for item in errors
    ]


def describe(problems: Sequence[Mapping[str, str]]) -> str:
    return "; ".join(f"{item['field']}: {item['problem']}" for item in problems)
