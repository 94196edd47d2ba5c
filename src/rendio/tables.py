"""The whole schema in one place: every table (so the metadata, and Alembic, sees all of it),
where the migrations live, and what start-up seeds after migrating."""

from pathlib import Path

import rendio.migrations
from rendio.admin.models import AdminAction
from rendio.catalog.importer import seed_defaults
from rendio.catalog.models import VideoModel
from rendio.credits.models import Purchase
from rendio.generation.models import VideoJob
from rendio.identity.models import AuthSession, DeviceBits, RefreshToken, User
from rendio.ledger.models import LedgerEntry
from rendio.platform import migrate
from rendio.platform.db import Base
from rendio.platform.models import ErrorLog, IdempotencyKey, OpsCount, WebhookDelivery
from rendio.platform.queue import ensure_queue_schema
from rendio.push.models import PushDelivery, PushToken

metadata = Base.metadata
MIGRATIONS = Path(rendio.migrations.__file__).parent
SEEDERS: tuple[migrate.Seeder, ...] = (ensure_queue_schema, seed_defaults)


def prepare_database(url: str) -> None:
    """Migrate to head and seed (the queue schema, new default models): once, under a lock."""
    migrate.prepare_database(url, MIGRATIONS, SEEDERS)


def upgrade(url: str, revision: str = "head") -> None:
    migrate.upgrade(url, MIGRATIONS, revision)


def downgrade(url: str, revision: str = "base") -> None:
    migrate.downgrade(url, MIGRATIONS, revision)


__all__ = [
    "AdminAction",
    "AuthSession",
    "DeviceBits",
    "ErrorLog",
    "IdempotencyKey",
    "LedgerEntry",
    "OpsCount",
    "Purchase",
    "PushDelivery",
    "PushToken",
    "RefreshToken",
    "User",
    "VideoJob",
    "VideoModel",
    "WebhookDelivery",
    "metadata",
]
