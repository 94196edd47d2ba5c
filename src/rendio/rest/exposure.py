"""Which tables `/rest/v1` and `/realtime/v1` show, which of their columns, and whose rows.

The allow-lists are the whole exposure: a column not listed here does not exist for a client
(device ids, Apple subjects, admin flags, provider internals, raw provider error text stay
behind). The same lists are granted column by column to the `rendio_rest` database role, and
row-level-security policies scope the rows again inside PostgreSQL (migration 0011), so a
mistake here still cannot show another user's row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Column, ColumnElement, Table, false, true

from rendio.catalog.models import VideoModel
from rendio.generation.models import VideoJob
from rendio.identity.models import User
from rendio.ledger.models import LedgerEntry

# A function of the stored value giving the value a client sees (storage key → signed link).
Present = Callable[[object], object]


@dataclass(frozen=True)
class Exposed:
    """A table as clients see it."""

    table: Table
    columns: tuple[str, ...]
    # Rows belong to the user in this column; None: a public table scoped by `public_rows`.
    owner: str | None
    # Columns whose stored value is turned into something else before it is shown.
    presented: frozenset[str] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.table.name

    def column(self, name: str) -> Column[object]:
        column: Column[object] = self.table.c[name]
        return column


USERS = Exposed(
    User.__table__,  # type: ignore[arg-type]
    (
        "id",
        "email",
        "is_guest",
        "tier",
        "credits_remaining",
        "credits_total",
        "initial_grant_claimed",
        "language",
        "theme_preference",
        "created_at",
        "updated_at",
    ),
    owner="id",
)
MODELS = Exposed(
    VideoModel.__table__,  # type: ignore[arg-type]
    (
        "id",
        "slug",
        "name",
        "category",
        "description",
        "provider",
        "cost_per_generation",
        "cost_per_second",
        "is_featured",
        "is_available",
        "thumbnail_url",
        "settings",
        "options",
        "created_at",
        "updated_at",
    ),
    owner=None,
)
VIDEO_JOBS = Exposed(
    VideoJob.__table__,  # type: ignore[arg-type]
    (
        "job_id",
        "user_id",
        "model_id",
        "prompt",
        "settings",
        "image_url",
        "status",
        "progress",
        "provider",
        "video_url",
        "thumbnail_url",
        "credits_used",
        "error_code",
        "created_at",
        "updated_at",
        "completed_at",
        "deleted_at",
        "media_expired_at",
    ),
    owner="user_id",
    presented=frozenset({"video_url", "thumbnail_url"}),
)
QUOTA_LOG = Exposed(
    LedgerEntry.__table__,  # type: ignore[arg-type]
    ("id", "user_id", "job_id", "change", "reason", "balance_after", "created_at"),
    owner="user_id",
)

TABLES: Mapping[str, Exposed] = {t.name: t for t in (USERS, MODELS, VIDEO_JOBS, QUOTA_LOG)}


def visible_rows(
    exposed: Exposed, user_id: object | None, offered: frozenset[str]
) -> ColumnElement[bool]:
    """The rows a caller may read: their own, or for the catalog the models offered to all.

    `user_id` is None for a request made with the anon key alone: it owns no rows.
    """
    if exposed.owner is None:
        table = exposed.table
        return table.c.is_available.is_(true()) & table.c.provider.in_(sorted(offered))
    if user_id is None:
        return false()
    owned = exposed.column(exposed.owner) == user_id
    if exposed is VIDEO_JOBS:
        # A job the user deleted is gone from their history (SPEC); this also lets the read use
        # the history index, which covers only the rows not deleted.
        return owned & exposed.table.c.deleted_at.is_(None)
    return owned
