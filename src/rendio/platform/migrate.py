"""Schema upgrades and start-up seeding, safe to run from many processes at once.

`prepare_database` is what every entry point calls (through `rendio/tables.py`, which names
the migrations and the seeding steps): it takes a PostgreSQL advisory lock, runs Alembic to
head, then each seeding step (the queue schema, new default catalog models), all in one
transaction, so a fleet starting together migrates exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from rendio.platform.db import sync_engine

# An arbitrary, fixed key for pg_advisory_xact_lock: "rendio" in ASCII.
_MIGRATION_LOCK_KEY = 0x72656E64696F


_LOCK = text("SELECT pg_advisory_xact_lock(:key)")


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Procrastinate owns its tables (and their indexes); Alembic compares only ours."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", "")
    return not (table or "").startswith("procrastinate")


Seeder = Callable[[Connection], object]


def alembic_config(url: str, migrations: Path) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d-%%(month).2d-%%(day).2d_%%(slug)s")
    return cfg


def _with_lock(url: str, action: Callable[[Connection], None]) -> None:
    engine = sync_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(_LOCK, {"key": _MIGRATION_LOCK_KEY})
            action(conn)
    finally:
        engine.dispose()


def _run_alembic(
    conn: Connection, url: str, migrations: Path, fn: Callable[[Config, str], None], revision: str
) -> None:
    cfg = alembic_config(url, migrations)
    cfg.attributes["connection"] = conn
    fn(cfg, revision)


def upgrade(url: str, migrations: Path, revision: str = "head") -> None:
    _with_lock(url, lambda conn: _run_alembic(conn, url, migrations, command.upgrade, revision))


def downgrade(url: str, migrations: Path, revision: str = "base") -> None:
    _with_lock(url, lambda conn: _run_alembic(conn, url, migrations, command.downgrade, revision))


def prepare_database(url: str, migrations: Path, seeders: Sequence[Seeder]) -> None:
    """Migrate to head, then run each seeder — once, under a lock, in one transaction."""

    def action(conn: Connection) -> None:
        _run_alembic(conn, url, migrations, command.upgrade, "head")
        for seed in seeders:
            seed(conn)

    _with_lock(url, action)
