"""get-models' answer kept in memory: served without the database between changes, dropped by
the notice of a change made anywhere, and never kept when it could be stale."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.cache import CatalogAnswer, CatalogCache
from rendio.platform.db import sync_engine
from tests.helpers.admin import admin_guest
from tests.helpers.clients import app_of
from tests.helpers.waiting import eventually


async def test_a_change_made_by_another_process_drops_the_kept_answer(
    client: httpx.AsyncClient, clean_database: str
) -> None:
    services = app_of(client).state.services
    assert await services.notices.wait_connected(10)
    first = await client.get("/functions/v1/get-models")
    assert first.status_code == 200
    kept = services.catalog_cache.answer
    assert kept is not None and kept.etag == first.headers["etag"]

    engine = sync_engine(clean_database)  # another connection, as another host would be
    with engine.begin() as conn:
        conn.execute(text("UPDATE models SET cost_per_generation = 7 WHERE slug = 'rendio-local'"))
    engine.dispose()
    dropped = await eventually(lambda: services.catalog_cache.answer is None, 5)
    assert dropped, "the change's notice was never heard"
    again = await client.get("/functions/v1/get-models")
    assert again.json()["models"][0]["cost_per_generation"] == 7
    assert again.headers["etag"] != first.headers["etag"]


async def test_an_admin_change_is_seen_at_once_by_its_own_process(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """Without waiting for the notice: admin-set-model forgets the answer when it commits."""
    admin = await admin_guest(client, db, "admin")
    services = app_of(client).state.services
    assert await services.notices.wait_connected(10)
    before = (await client.get("/functions/v1/get-models")).json()["models"]
    assert services.catalog_cache.answer is not None
    changed = await client.post(
        "/functions/v1/admin-set-model",
        json={"model_id": before[0]["id"], "price": 9, "reason": "test"},
        headers=admin.headers,
    )
    assert changed.status_code == 200, changed.text
    after = (await client.get("/functions/v1/get-models")).json()["models"]
    assert after[0]["cost_per_generation"] == 9


def test_nothing_is_kept_that_a_change_could_have_overtaken() -> None:
    answer = CatalogAnswer(b"{}", '"x"')
    cache = CatalogCache()
    cache.keep(cache.generation, answer)
    assert cache.answer is None  # the listener is not connected: changes could go unheard

    cache.listening(True)
    racing = cache.generation
    cache.changed()  # a change heard while the answer was being read
    cache.keep(racing, answer)
    assert cache.answer is None

    cache.keep(cache.generation, answer)
    assert cache.answer is answer
    cache.listening(False)  # the listener lost: what it might miss cannot be trusted
    assert cache.answer is None
    cache.keep(cache.generation, answer)
    assert cache.answer is None


def test_an_answer_is_kept_at_most_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last guard, should notices be swallowed (a pooler in transaction mode)."""
    from rendio.catalog import cache as module

    now = [1000.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    cache = CatalogCache()
    cache.listening(True)
    answer = CatalogAnswer(b"{}", '"x"')
    cache.keep(cache.generation, answer)
    now[0] += module.MAX_AGE_SECONDS - 1
    assert cache.answer is answer
    now[0] += 2
    assert cache.answer is None


async def test_the_listener_comes_back_after_its_connection_is_cut(
    client: httpx.AsyncClient, clean_database: str
) -> None:
    services = app_of(client).state.services
    assert await services.notices.wait_connected(10)
    await client.get("/functions/v1/get-models")
    assert services.catalog_cache.answer is not None
    engine = sync_engine(clean_database)
    with engine.begin() as conn:
        cut = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE 'LISTEN \"rendio_%'"
            )
        ).all()
    assert cut, "no listener connection found"
    # Dropped when the loss is noticed, then listening again.
    back = await eventually(
        lambda: services.catalog_cache.answer is None and services.notices.connected.is_set(), 10
    )
    assert back and services.notices.connected.is_set()
    await client.get("/functions/v1/get-models")
    assert services.catalog_cache.answer is not None
    with engine.begin() as conn:
        conn.execute(text("UPDATE models SET cost_per_generation = 5 WHERE slug = 'rendio-local'"))
    engine.dispose()
    dropped = await eventually(lambda: services.catalog_cache.answer is None, 5)
    assert dropped, "the new listener did not hear the change"
