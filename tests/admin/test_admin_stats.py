"""admin-stats (the seed's key metrics), the error log and the operator's counters: each figure
checked against what the test made happen."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.generation import jobs
from rendio.platform.errors import ErrorCode
from tests.helpers.admin import add_job, admin_guest
from tests.helpers.clients import device_check, guest, open_client
from tests.helpers.settings import SettingsFactory
from tests.helpers.waiting import eventually

F = "/functions/v1"


@pytest.fixture
async def quick_log_client(make_settings: SettingsFactory) -> AsyncIterator[httpx.AsyncClient]:
    """The app writing its error log every 50 ms, with a device-check limit of 3 an hour."""
    settings = make_settings(ops_log_interval=0.05, rate_limit_device_check="3/hour")
    app = create_app(settings, settings.database_url or "")

    async def boom() -> None:
        raise RuntimeError("a bug with a secret=hunter2 in its message")

    app.add_api_route("/functions/v1/boom", boom)
    async for http in open_client(app):
        yield http


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_stats_count_what_happened(
    quick_log_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = quick_log_client
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    await guest(client, "third")
    refused = await device_check(client, "fourth", "phone-fourth")
    assert refused.status_code == 429
    for status, seconds in [("completed", 10), ("completed", 20), ("completed", 30)]:
        job_id = await add_job(db, user, status)
        await db.execute(
            text(
                "UPDATE video_jobs SET completed_at = created_at + make_interval(secs => :s) "
                "WHERE job_id = :j"
            ),
            {"s": seconds, "j": job_id},
        )
    failed = await add_job(db, user, "processing", cost=0)
    await jobs.fail(db, uuid.UUID(failed), ErrorCode.PROVIDER_TIMEOUT, "took too long")
    await db.commit()
    await client.post(
        f"{F}/admin-refund-credits",
        json={"user_id": user.user_id, "amount": 4, "reason": "x"},
        headers=admin.headers,
    )

    async def stats() -> dict[str, Any] | None:
        answer = await client.get(f"{F}/admin-stats", headers=admin.headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body if body["rate_limit_hits"]["total"] == 1 else None

    body = await eventually(stats)
    assert body is not None, "the rate-limit refusal never reached admin-stats"
    generations = body["generations"]
    assert generations["by_status"] == {
        "pending": 0,
        "processing": 0,
        "completed": 3,
        "failed": 1,
    }
    assert generations["by_provider"] == {"local": {"completed": 3, "failed": 1}}
    assert generations["success_rate"] == 0.75
    assert generations["average_seconds"] == pytest.approx(20, abs=0.01)
    assert generations["p95_seconds"] == pytest.approx(29, abs=0.01)
    assert body["provider_errors"] == {"local": {"ERR_5001": 1}}
    starter = 3 * 10  # three guests, the default starter credits
    assert body["credits"]["granted"] == starter
    assert body["credits"]["refunded"] == 4
    assert body["credits"]["spent"] == 0
    assert body["purchases"] == {"count": 0, "credits": 0, "refunded": 0}
    assert body["rate_limit_hits"]["by_policy"] == {"device-check": 1}
    assert {"code": "ERR_4004", "count": 1} in body["top_error_codes"]

    later = await client.get(
        f"{F}/admin-stats", params={"since": "2999-01-01T00:00:00Z"}, headers=admin.headers
    )
    assert later.json()["generations"]["by_status"]["completed"] == 0
    bad = await client.get(f"{F}/admin-stats", params={"since": "yesterday"}, headers=admin.headers)
    assert bad.status_code == 422


async def test_a_5xx_is_logged_once_with_its_request_and_no_secret(
    quick_log_client: httpx.AsyncClient, db: AsyncSession
) -> None:
    client = quick_log_client
    user = await guest(client, "customer")
    before = metric("rendio_errors_total", code="ERR_6003")
    answer = await client.get(f"{F}/boom", headers={**user.headers, "X-Request-Id": "req-boom-1"})
    assert answer.status_code == 500
    assert metric("rendio_errors_total", code="ERR_6003") == before + 1

    async def rows() -> list[Any]:
        found = list(await db.execute(text("SELECT * FROM error_log")))
        await db.commit()
        return found

    [row] = await eventually(rows)
    assert (row.source, row.code, row.request_id) == ("api", "ERR_6003", "req-boom-1")
    assert row.details["error"] == "RuntimeError" and row.details["path"] == "/functions/v1/boom"
    assert "hunter2" not in str(row.message) + str(row.details)
    assert row.user_id is None  # the route took no session; nothing identified the caller
    # 4xx answers are counted, not logged as rows.
    await client.get(f"{F}/get-user-credits")
    await asyncio.sleep(0.3)
    assert len(await rows()) == 1


async def test_a_failed_job_logs_its_provider_failure_in_the_same_transaction(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client, "customer")
    job_id = await add_job(db, user, "processing", cost=0)
    assert await jobs.fail(db, uuid.UUID(job_id), ErrorCode.PROVIDER_REJECTED, "content policy")
    await db.rollback()
    assert (await db.execute(text("SELECT count(*) FROM error_log"))).scalar() == 0
    assert await jobs.fail(db, uuid.UUID(job_id), ErrorCode.PROVIDER_REJECTED, "content policy")
    await db.commit()
    row = (await db.execute(text("SELECT * FROM error_log"))).one()
    await db.commit()
    assert (row.source, row.code, row.provider, row.message) == (
        "worker",
        "ERR_5003",
        "local",
        "content policy",
    )
    assert (str(row.job_id), str(row.user_id)) == (job_id, user.user_id)


async def test_credits_are_counted_by_reason_only_when_committed(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    from rendio.ledger import service as ledger
    from rendio.ledger.service import Reason

    user = await guest(client, "customer")
    before = metric("rendio_credits_moved_total", reason="admin_adjust")
    await ledger.add(
        db, uuid.UUID(user.user_id), 5, reason=Reason.ADMIN_ADJUST, transaction_id="t-rolled-back"
    )
    await db.rollback()
    assert metric("rendio_credits_moved_total", reason="admin_adjust") == before
    await ledger.add(
        db, uuid.UUID(user.user_id), 5, reason=Reason.ADMIN_ADJUST, transaction_id="t-committed"
    )
    await db.commit()
    assert metric("rendio_credits_moved_total", reason="admin_adjust") == before + 5
