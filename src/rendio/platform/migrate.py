"""Schema upgrades and start-up seeding, safe to run from many processes at once.

`prepare_database` is what every entry point calls: it takes a PostgreSQL advisory lock, runs
Alembic to head, applies procrastinate's queue schema when missing and inserts any new default
catalog models, all in one transaction, so a fleet starting together migrates exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

import rendio.migrations
from rendio.platform.db import sync_engine

# An arbitrary, fixed key for pg_advisory_xact_lock: "rendio" in ASCII.
_MIGRATION_LOCK_KEY = 0x72656E64696F


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Procrastinate owns its tables (and their indexes); Alembic compares only ours."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (table or "").startswith("procrastinate")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(rendio.migrations.__file__).parent))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    return cfg


def _with_lock(url: str, action: Callable[[Connection], None]) -> None:
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            action(conn)
    finally:
        engine.dispose()


def _run_alembic(
    conn: Connection, url: str, fn: Callable[[Config, str], None], revision: str
) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = conn
    fn(cfg, revision)


def upgrade(url: str, revision: str = "head") -> None:
    _with_lock(url, lambda conn: _run_alembic(conn, url, command.upgrade, revision))


def downgrade(url: str, revision: str = "base") -> None:
    _with_lock(url, lambda conn: _run_alembic(conn, url, command.downgrade, revision))


def prepare_database(url: str) -> None:
    """Migrate to head, ensure the queue schema, seed new default models — once, under a lock."""
    from rendio.catalog.importer import seed_defaults
    from rendio.platform.queue import ensure_queue_schema

    def action(conn: Connection) -> None:
        _run_alembic(conn, url, command.upgrade, "head")
        ensure_queue_schema(conn)
        seed_defaults(conn)

    _with_lock(url, action)
