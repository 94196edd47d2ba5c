"""Migrations: a fresh database upgraded to head equals the ORM metadata; downgrade works."""

import os
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from rendio.platform.db import sync_engine
from rendio.platform.migrate import include_object
from rendio.tables import downgrade, metadata, prepare_database, upgrade
from tests.helpers.database import create_database, drop_database


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = f"rendio_migrations_{os.getpid()}"
    url = create_database(server_url, name)
    yield url
    drop_database(server_url, name)


def drift(engine: Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_object": include_object,
            },
        )
        return compare_metadata(context, metadata)


def test_upgrade_from_empty_has_no_drift_and_downgrade_to_base(empty_database: str) -> None:
    engine = sync_engine(empty_database)
    upgrade(empty_database)
    assert drift(engine) == []

    downgrade(empty_database, "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}

    upgrade(empty_database)
    assert drift(engine) == []
    engine.dispose()


def test_prepare_database_twice_is_harmless(empty_database: str) -> None:
    prepare_database(empty_database)
    prepare_database(empty_database)
    engine = sync_engine(empty_database)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM models")).scalar() >= 1
        assert conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
    engine.dispose()


def test_schema_enforces_the_money_rules(database_url: str, clean_database: str) -> None:
    engine = sync_engine(database_url)
    with (
        pytest.raises(IntegrityError, match="credits_remaining_non_negative"),
        engine.begin() as conn,
    ):
        conn.execute(text("INSERT INTO users (credits_remaining) VALUES (-1)"))
    with pytest.raises(IntegrityError, match="uq_users_device_id"), engine.begin() as conn:
        conn.execute(text("INSERT INTO users (device_id) VALUES ('d1'), ('d1')"))
    with pytest.raises(IntegrityError, match="uq_users_apple_sub"), engine.begin() as conn:
        conn.execute(text("INSERT INTO users (apple_sub) VALUES ('a1'), ('a1')"))
    with pytest.raises(IntegrityError, match="uq_quota_log_transaction_id"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO quota_log (change, reason, transaction_id, balance_after) "
                "VALUES (1, 'grant', 't1', 1), (1, 'grant', 't1', 2)"
            )
        )
    engine.dispose()


def test_ledger_rows_survive_account_deletion(database_url: str, clean_database: str) -> None:
    engine = sync_engine(database_url)
    with engine.begin() as conn:
        user_id = conn.execute(
            text("INSERT INTO users (credits_remaining) VALUES (5) RETURNING id")
        ).scalar()
        conn.execute(
            text(
                "INSERT INTO quota_log (user_id, change, reason, transaction_id, balance_after) "
                "VALUES (:u, 5, 'initial_grant', 'g1', 5)"
            ),
            {"u": user_id},
        )
        conn.execute(text("DELETE FROM users WHERE id = :u"), {"u": user_id})
        row = conn.execute(
            text("SELECT user_id, change FROM quota_log WHERE transaction_id = 'g1'")
        ).one()
    assert row.user_id is None and row.change == 5
    engine.dispose()


def test_active_history_index_is_partial(database_url: str) -> None:
    engine = sync_engine(database_url)
    with engine.connect() as conn:
        definition = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_video_jobs_user_active'")
        ).scalar_one()
    engine.dispose()
    assert "WHERE (deleted_at IS NULL)" in definition
    assert "created_at DESC" in definition
