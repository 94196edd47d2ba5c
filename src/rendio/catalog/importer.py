"""Loading catalog files into the `models` table (CLI and start-up; synchronous on purpose).

A file is validated whole before anything is written, and written in one transaction, so a
bad file changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from rendio.catalog.models import VideoModel
from rendio.catalog.schemas import CatalogEntry, CatalogFile, model_id_for

DEFAULT_CATALOG = Path(__file__).with_name("default_models.yaml")
_UPDATABLE = (
    "name",
    "category",
    "description",
    "provider",
    "provider_model_id",
    "cost_per_generation",
    "cost_per_second",
    "is_featured",
    "is_available",
    "thumbnail_url",
    "settings",
    "options",
    "deadline_seconds",
)


class CatalogError(Exception):
    """A catalog file is unreadable or invalid; the message says where and why."""


def _location(loc: tuple[Any, ...], document: Any) -> str:
    parts: list[str] = []
    node = document
    for item in loc:
        if isinstance(item, int) and isinstance(node, list) and item < len(node):
            node = node[item]
            slug = node.get("slug") if isinstance(node, dict) else None
            parts.append(f"[{item}]" + (f" ({slug})" if slug else ""))
        else:
            node = node.get(item) if isinstance(node, dict) else None
            parts.append(f".{item}")
    return "".join(parts).lstrip(".") or "file"


def parse_catalog(text: str, *, source: str = "catalog") -> list[CatalogEntry]:
    try:
        document = yaml.safe_load(text) if not source.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise CatalogError(f"{source}: not valid YAML/JSON: {error}") from None
    if isinstance(document, list):
        document = {"models": document}
    if not isinstance(document, dict):
        raise CatalogError(f"{source}: expected a mapping with a 'models' list")
    try:
        return CatalogFile.model_validate(document).models
    except ValidationError as error:
        problems = [f"{_location(item['loc'], document)}: {item['msg']}" for item in error.errors()]
        raise CatalogError(f"{source}: invalid catalog:\n  " + "\n  ".join(problems)) from None


def load_catalog(path: Path) -> list[CatalogEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError(f"cannot read {path}: {error}") from None
    return parse_catalog(text, source=str(path))


def _row(entry: CatalogEntry) -> dict[str, Any]:
    row = entry.model_dump(mode="json")
    row["id"] = model_id_for(entry.slug)
    return row


def import_models(conn: Connection, entries: list[CatalogEntry]) -> tuple[int, int]:
    """Upsert by slug; returns (inserted, updated). The caller owns the transaction."""
    existing = set(
        conn.execute(
            select(VideoModel.slug).where(VideoModel.slug.in_([entry.slug for entry in entries]))
        ).scalars()
    )
    statement = insert(VideoModel).values([_row(entry) for entry in entries])
    statement = statement.on_conflict_do_update(
        index_elements=[VideoModel.slug],
        set_={name: statement.excluded[name] for name in _UPDATABLE} | {"updated_at": func.now()},
    )
    conn.execute(statement)
    return len(entries) - len(existing), len(existing)


def seed_defaults(conn: Connection) -> int:
    """Insert packaged models whose slug is new; never overwrite what an operator changed."""
    entries = load_catalog(DEFAULT_CATALOG)
    statement = (
        insert(VideoModel)
        .values([_row(entry) for entry in entries])
        .on_conflict_do_nothing(index_elements=[VideoModel.slug])
        .returning(VideoModel.slug)
    )
    return len(conn.execute(statement).all())
