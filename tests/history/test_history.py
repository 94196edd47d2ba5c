"""get-video-jobs, delete-video-job, restore-video-job: keyset pages that never repeat or skip,
cursors the server can tell it issued, soft delete that is only a view."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.clients import Guest, guest
from tests.helpers.factories import LOCAL_ID, generate

PAGE = "/functions/v1/get-video-jobs"

# Jobs straight into the table (no charge: these tests read history, they do not spend), with
# creation times in pairs so that equal timestamps exercise the job_id tie-break.
_INSERT_JOBS = text(
    "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, credits_used, "
    "deadline_at, status, created_at) "
    "SELECT :user_id, :model_id, 'job ' || n, '{}'::jsonb, 'local', 1, now() + interval '1 hour', "
    "CASE WHEN n % 3 = 0 THEN 'failed' ELSE 'completed' END, "
    "now() - make_interval(secs => (n / 2) * 10 + :offset) "
    "FROM generate_series(1, :count) AS n RETURNING job_id, created_at, status"
)


async def add_jobs(db: AsyncSession, user: Guest, count: int, offset: int = 0) -> None:
    await db.execute(
        _INSERT_JOBS,
        {"user_id": user.user_id, "model_id": LOCAL_ID, "count": count, "offset": offset},
    )
    await db.commit()


async def expected_order(db: AsyncSession, user: Guest, deleted: bool = False) -> list[str]:
    rows = await db.execute(
        text(
            "SELECT job_id::text FROM video_jobs "
            "WHERE user_id = :u AND (deleted_at IS NOT NULL) = :d "
            "ORDER BY created_at DESC, job_id DESC"
        ),
        {"u": user.user_id, "d": deleted},
    )
    return list(rows.scalars())


async def all_pages(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = await client.get(PAGE, params=query, headers=headers)
        assert page.status_code == 200, page.text
        body = page.json()
        items += body["data"]
        assert body["has_more"] == (body["next_cursor"] is not None)
        if not body["has_more"]:
            return items
        cursor = body["next_cursor"]
    raise AssertionError("pages never ended")


async def test_every_limit_pages_through_each_job_once_in_order(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client)
    await add_jobs(db, user, 57)
    expected = await expected_order(db, user)
    assert len(expected) == 57
    for limit in range(1, 61):
        items = await all_pages(client, user.headers, limit=limit)
        assert [item["job_id"] for item in items] == expected, limit
    first = (await client.get(PAGE, headers=user.headers)).json()
    assert len(first["data"]) == 20  # the default limit
    item = first["data"][0]
    assert set(item) == {
        "job_id", "status", "progress", "prompt", "model_id", "model_name", "thumbnail_url",
        "video_url", "credits_used", "error", "created_at", "completed_at", "deleted_at",
        "media_expired",
    }  # fmt: skip
    assert item["model_name"] == "Rendio Local Preview"


async def test_rows_added_or_deleted_between_pages_neither_repeat_nor_hide_others(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client)
    await add_jobs(db, user, 57, offset=100)
    throughout = await expected_order(db, user)
    seen: list[str] = []
    deleted: set[str] = set()
    cursor = None
    for round_number in range(100):
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = (await client.get(PAGE, params=params, headers=user.headers)).json()
        seen += [item["job_id"] for item in body["data"]]
        await add_jobs(db, user, 2)  # newer than everything: they sort before the cursor
        victim = throughout[-1 - round_number]
        if victim not in seen:
            response = await client.post(
                "/functions/v1/delete-video-job", json={"job_id": victim}, headers=user.headers
            )
            assert response.status_code == 200
            deleted.add(victim)
        if not body["has_more"]:
            break
        cursor = body["next_cursor"]
    assert len(seen) == len(set(seen)), "a job was shown twice"
    assert [job for job in throughout if job not in deleted] == seen


@pytest.mark.parametrize("problem", ["forged", "truncated", "another user", "another filter"])
async def test_bad_cursors_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, problem: str
) -> None:
    alice = await guest(client, "install-a")
    bob = await guest(client, "install-b")
    await add_jobs(db, alice, 5)
    await add_jobs(db, bob, 5)
    cursor = (await client.get(PAGE, params={"limit": 2}, headers=alice.headers)).json()[
        "next_cursor"
    ]
    params: dict[str, Any] = {"limit": 2}
    headers = alice.headers
    if problem == "forged":
        params["cursor"] = cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")
    elif problem == "truncated":
        params["cursor"] = cursor[:10]
    elif problem == "another user":
        params["cursor"], headers = cursor, bob.headers
    else:
        params["cursor"], params["status"] = cursor, "failed"
    refused = await client.get(PAGE, params=params, headers=headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "ERR_4013"
    for garbage in ("", "%%%", "a" * 600, "\u00e9t\u00e9"):
        response = await client.get(PAGE, params={"cursor": garbage}, headers=alice.headers)
        assert response.status_code in (200, 422), garbage  # "" means no cursor


async def test_filters_limits_and_post(client: httpx.AsyncClient, db: AsyncSession) -> None:
    user = await guest(client)
    await add_jobs(db, user, 12)
    failed = await all_pages(client, user.headers, status="failed")
    assert {item["status"] for item in failed} == {"failed"}
    assert len(failed) == 4
    posted = await client.post(PAGE, json={"limit": 5, "status": "completed"}, headers=user.headers)
    assert posted.status_code == 200
    assert len(posted.json()["data"]) == 5
    for params in ({"limit": 0}, {"limit": 101}, {"status": "nope"}, {"deleted": "maybe"}):
        refused = await client.get(PAGE, params=params, headers=user.headers)
        assert refused.status_code == 422, params
        assert refused.json()["error"]["code"] == "ERR_4013"
    assert (await client.get(PAGE)).status_code == 401


async def test_delete_restore_and_the_deleted_view(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    alice = await guest(client, "install-a")
    bob = await guest(client, "install-b")
    job_id = (await generate(client, alice.headers)).json()["job_id"]  # pending: no worker here
    for _ in range(2):  # deleting twice is harmless
        deleted = await client.post(
            "/functions/v1/delete-video-job", json={"job_id": job_id}, headers=alice.headers
        )
        assert deleted.json() == {"job_id": job_id, "deleted": True}
    assert await all_pages(client, alice.headers) == []
    shown = await all_pages(client, alice.headers, deleted="true")
    assert [item["job_id"] for item in shown] == [job_id]
    assert shown[0]["deleted_at"] is not None
    status = await client.get(
        "/functions/v1/get-video-status", params={"job_id": job_id}, headers=alice.headers
    )
    assert status.status_code == 404
    # Deleting an unfinished job hides it; it is neither stopped nor refunded.
    row = (
        await db.execute(text("SELECT status FROM video_jobs WHERE job_id = :j"), {"j": job_id})
    ).scalar_one()
    assert row == "pending"
    refunds = await db.execute(text("SELECT count(*) FROM quota_log WHERE reason = 'refund'"))
    assert refunds.scalar_one() == 0

    for path, method in (("delete-video-job", "POST"), ("restore-video-job", "POST")):
        theirs = await client.request(
            method, f"/functions/v1/{path}", json={"job_id": job_id}, headers=bob.headers
        )
        assert theirs.status_code == 404
        assert theirs.json()["error"]["code"] == "ERR_4011"
    for _ in range(2):
        restored = await client.post(
            "/functions/v1/restore-video-job", json={"job_id": job_id}, headers=alice.headers
        )
        assert restored.json() == {"job_id": job_id, "deleted": False}
    assert [item["job_id"] for item in await all_pages(client, alice.headers)] == [job_id]

    by_query = await client.delete(
        "/functions/v1/delete-video-job", params={"job_id": job_id}, headers=alice.headers
    )
    assert by_query.json() == {"job_id": job_id, "deleted": True}
    await client.post(
        "/functions/v1/restore-video-job", json={"job_id": job_id}, headers=alice.headers
    )
    by_body = await client.request(
        "DELETE", "/functions/v1/delete-video-job", json={"job_id": job_id}, headers=alice.headers
    )
    assert by_body.json() == {"job_id": job_id, "deleted": True}
    missing = await client.delete("/functions/v1/delete-video-job", headers=alice.headers)
    assert missing.status_code == 422
    unknown = await client.post(
        "/functions/v1/delete-video-job", json={"job_id": str(uuid.uuid4())}, headers=alice.headers
    )
    assert unknown.status_code == 404
