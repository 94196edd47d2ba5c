"""`/rest/v1` over raw HTTP, with requests shaped exactly as supabase-swift and supabase-js send
them (SUPABASE-WIRE.md §A): the app's three calls, single objects, counts, errors, refusals."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.clients import Guest, guest
from tests.helpers.factories import generate

OBJECT = "application/vnd.pgrst.object+json"
SWIFT = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "X-Client-Info": "supabase-swift/2.55.1",
}
FOUR_KEYS = {"code", "message", "details", "hint"}


def swift_headers(user: Guest | None = None, **extra: str) -> dict[str, str]:
    headers = {**SWIFT, "Apikey": "anon"}
    headers["Authorization"] = user.headers["Authorization"] if user else "Bearer anon"
    return {**headers, **extra}


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == FOUR_KEYS, body
    assert body["code"] == code, body
    return body


async def test_the_app_reads_its_balance_as_one_object(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    upper = user.user_id.upper()  # supabase-swift renders UUIDs upper-case
    response = await client.get(
        f"/rest/v1/users?select=credits_remaining&id=eq.{upper}",
        headers=swift_headers(user, Accept=OBJECT),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(OBJECT)
    assert response.json() == {"credits_remaining": 10}


async def test_the_profile_shows_allowed_columns_only(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    response = await client.get(
        f"/rest/v1/users?select=%2A&id=eq.{user.user_id}", headers=swift_headers(user)
    )
    assert response.status_code == 200, response.text
    (row,) = response.json()
    assert row["id"] == user.user_id and row["is_guest"] is True
    for hidden in ("device_id", "apple_sub", "is_admin", "banned_at", "merged_into"):
        assert hidden not in row
    hidden_asked = await client.get("/rest/v1/users?select=device_id", headers=swift_headers(user))
    assert_problem(hidden_asked, 400, "42703")


async def test_the_catalog_as_swift_asks_for_it(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/rest/v1/models?select=%2A&is_available=eq.true&order=is_featured.desc.nullslast",
        headers=swift_headers(),
    )
    assert response.status_code == 200, response.text
    models = response.json()
    assert models and all(m["is_available"] for m in models)
    featured = [m["is_featured"] for m in models]
    assert featured == sorted(featured, reverse=True)
    # Only offered models: without provider keys that is the `local` renderer's.
    assert {m["provider"] for m in models} == {"local"}
    assert response.headers["content-range"] == f"0-{len(models) - 1}/*"


async def test_history_as_js_asks_for_it_with_a_count(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    for _ in range(3):
        assert (await generate(client, user.headers)).status_code == 200
    headers = {"apikey": "anon", **user.headers, "Accept-Profile": "public"}
    page = await client.get(
        "/rest/v1/video_jobs?select=*&order=created_at.desc&offset=0&limit=2",
        headers={**headers, "Prefer": "count=exact"},
    )
    assert page.status_code == 206, page.text
    assert page.headers["content-range"] == "0-1/3"
    rows = page.json()
    assert len(rows) == 2 and all(r["user_id"] == user.user_id for r in rows)
    assert rows[0]["created_at"] >= rows[1]["created_at"]
    assert "error_message" not in rows[0] and "provider_state" not in rows[0]
    everything = await client.get(
        "/rest/v1/video_jobs?select=job_id", headers={**headers, "Prefer": "count=exact"}
    )
    assert everything.status_code == 200 and everything.headers["content-range"] == "0-2/3"
    beyond = await client.get(
        "/rest/v1/video_jobs?offset=10", headers={**headers, "Prefer": "count=exact"}
    )
    assert_problem(beyond, 416, "PGRST103")
    # As PostgREST: an offset past an empty result is unsatisfiable too; offset 0 is not.
    other = await guest(client, "nobody-generated")
    empty_headers = {"apikey": "anon", **other.headers, "Prefer": "count=exact"}
    past_empty = await client.get("/rest/v1/video_jobs?offset=1", headers=empty_headers)
    assert_problem(past_empty, 416, "PGRST103")
    assert past_empty.headers["content-range"] == "*/0"
    at_start = await client.get("/rest/v1/video_jobs?offset=0&apikey=anon", headers=empty_headers)
    assert at_start.status_code == 200 and at_start.json() == []
    assert at_start.headers["content-range"] == "*/0"


async def test_single_on_zero_and_two_rows(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    none = await client.get(
        "/rest/v1/video_jobs?status=eq.completed", headers=swift_headers(user, Accept=OBJECT)
    )
    body = assert_problem(none, 406, "PGRST116")
    assert body["details"] == "The result contains 0 rows"
    assert body["message"] == "Cannot coerce the result to a single JSON object"
    for _ in range(2):
        await generate(client, user.headers)
    two = await client.get("/rest/v1/video_jobs", headers=swift_headers(user, Accept=OBJECT))
    assert assert_problem(two, 406, "PGRST116")["details"] == "The result contains 2 rows"


async def test_filters_and_logic_trees(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    jobs = [(await generate(client, user.headers)).json()["job_id"] for _ in range(3)]
    headers = swift_headers(user)

    async def ids(query: str) -> set[str]:
        response = await client.get(f"/rest/v1/video_jobs?select=job_id&{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {row["job_id"] for row in response.json()}

    assert await ids(f"job_id=in.({jobs[0]},{jobs[1].upper()})") == set(jobs[:2])
    assert await ids(f"job_id=not.in.({jobs[0]})") == set(jobs[1:])
    assert await ids(f"or=(job_id.eq.{jobs[0]},job_id.eq.{jobs[2]})") == {jobs[0], jobs[2]}
    assert await ids(f"or=(status.eq.completed,and(job_id.eq.{jobs[1]},video_url.is.null))") == {
        jobs[1]
    }
    assert await ids("prompt=ilike.*PAPER%20BOAT*") == set(jobs)
    assert await ids("prompt=like.nothing*") == set()
    assert await ids("credits_used=gte.1&completed_at=is.null") == set(jobs)
    assert await ids("not.or=(status.eq.pending,status.eq.processing)") == set()
    assert await ids("deleted_at=is.NULL&limit=1&order=job_id.asc") == {min(jobs)}
    renamed = await client.get("/rest/v1/video_jobs?select=id:job_id,status", headers=headers)
    assert set(renamed.json()[0]) == {"id", "status"}


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("select=nope", 400, "42703"),
        ("nope=eq.1", 400, "42703"),
        ("order=nope.desc", 400, "42703"),
        ("status=noop.1", 400, "PGRST100"),
        ("status=pending", 400, "PGRST100"),
        ("status=eq", 400, "PGRST100"),
        ("limit=-1", 400, "PGRST100"),
        ("order=created_at.sideways", 400, "PGRST100"),
        ("or=(status.eq.a", 400, "PGRST100"),
        ("select=count()", 400, "PGRST123"),
        ("select=*,models(*)", 400, "PGRST200"),
        ("settings->>duration=eq.2", 400, "PGRST100"),
        ("models.name=eq.x", 400, "PGRST108"),
        ("created_at=gt.yesterday-ish", 400, "22007"),
        ("job_id=eq.not-a-uuid", 400, "22P02"),
        ("job_id=like.abc*", 404, "42883"),
        ("status=fts.word", 400, "PGRST100"),
        ("or=" + "(" * 20 + "status.eq.a" + ")" * 20, 400, "PGRST100"),
        # PostgreSQL text holds no NUL: refused by the grammar, not failed in the driver.
        ("prompt=eq.a%00b", 400, "PGRST100"),
        ("status=in.(%00)", 400, "PGRST100"),
        ("select=job_id%00", 400, "PGRST100"),
        ("or=(prompt.eq.%00)", 400, "PGRST100"),
        # Digits that are not ASCII digits are not a count.
        ("limit=%C2%B2", 400, "PGRST100"),
        ("offset=%C2%B9%C2%B2", 400, "PGRST100"),
    ],
)
async def test_bad_queries_get_postgrest_errors(
    client: httpx.AsyncClient, query: str, status: int, code: str
) -> None:
    user = await guest(client)
    response = await client.get(f"/rest/v1/video_jobs?{query}", headers=swift_headers(user))
    assert_problem(response, status, code)


async def test_unknown_table_and_media_type(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    missing = await client.get("/rest/v1/auth_sessions", headers=swift_headers(user))
    body = assert_problem(missing, 404, "PGRST205")
    assert "public.auth_sessions" in body["message"]
    csv = await client.get("/rest/v1/models", headers=swift_headers(user, Accept="text/csv"))
    assert_problem(csv, 406, "PGRST107")


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
async def test_writes_are_refused_and_change_nothing(
    client: httpx.AsyncClient, method: str
) -> None:
    user = await guest(client)
    response = await client.request(
        method,
        f"/rest/v1/users?id=eq.{user.user_id}",
        json={"credits_remaining": 1_000_000},
        headers=swift_headers(user),
    )
    assert_problem(response, 403, "42501")
    balance = await client.get(
        "/rest/v1/users?select=credits_remaining", headers=swift_headers(user, Accept=OBJECT)
    )
    assert balance.json() == {"credits_remaining": 10}


async def test_other_users_rows_are_never_visible(client: httpx.AsyncClient) -> None:
    alice = await guest(client, "alice")
    bob = await guest(client, "bob")
    await generate(client, alice.headers)
    await generate(client, bob.headers)
    for table, column in (("users", "id"), ("video_jobs", "user_id"), ("quota_log", "user_id")):
        asked = await client.get(
            f"/rest/v1/{table}?{column}=eq.{bob.user_id}", headers=swift_headers(alice)
        )
        assert asked.status_code == 200 and asked.json() == [], (table, asked.text)
        widened = await client.get(
            f"/rest/v1/{table}?or=({column}.eq.{bob.user_id},{column}.neq.{bob.user_id})",
            headers=swift_headers(alice),
        )
        assert {row[column] for row in widened.json()} == {alice.user_id}, table


async def test_the_anon_key_reads_the_catalog_but_no_ones_rows(client: httpx.AsyncClient) -> None:
    await guest(client)
    models = await client.get("/rest/v1/models?select=id", headers=swift_headers())
    assert models.status_code == 200 and models.json()
    for table in ("users", "video_jobs", "quota_log"):
        rows = await client.get(f"/rest/v1/{table}", headers=swift_headers())
        assert rows.status_code == 200 and rows.json() == [], table


async def test_bad_tokens_are_told_apart(client: httpx.AsyncClient) -> None:
    user = await guest(client)
    forged = await client.get(
        "/rest/v1/users", headers=swift_headers(Authorization="Bearer not.a.jwt")
    )
    assert_problem(forged, 401, "PGRST301")
    claims = jwt.decode(user.session["access_token"], options={"verify_signature": False})
    settings = client._transport.app.state.services  # type: ignore[attr-defined]
    claims["exp"] = int(time.time()) - 10
    expired = jwt.encode(claims, settings.secret, algorithm="HS256")
    answer = await client.get(
        "/rest/v1/users", headers=swift_headers(Authorization=f"Bearer {expired}")
    )
    assert_problem(answer, 401, "PGRST303")
    assert "invalid_token" in answer.headers["www-authenticate"]
    await client.post("/auth/v1/logout", headers=user.headers)
    revoked = await client.get("/rest/v1/users", headers=swift_headers(user))
    assert_problem(revoked, 401, "PGRST301")


async def test_row_security_holds_without_the_compiler(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """Defense in depth: as `rendio_rest`, a query with no WHERE at all still sees only the
    caller's rows, and nothing without a caller; hidden columns are refused by PostgreSQL."""
    alice = await guest(client, "alice")
    bob = await guest(client, "bob")
    await generate(client, bob.headers)

    async def visible(user_id: str, sql: str) -> list[Any]:
        await db.execute(
            text(
                "SELECT set_config('rendio.rest_user', :u, true), set_config('role', "
                "'rendio_rest', true)"
            ),
            {"u": user_id},
        )
        rows = list((await db.execute(text(sql))).all())
        await db.rollback()
        return rows

    assert await visible(alice.user_id, "SELECT id FROM users") == [(uuid.UUID(alice.user_id),)]
    assert await visible("", "SELECT id FROM users") == []
    assert await visible(alice.user_id, "SELECT job_id FROM video_jobs") == []
    assert len(await visible(bob.user_id, "SELECT job_id FROM video_jobs")) == 1
    assert await visible(alice.user_id, "SELECT user_id FROM quota_log") == [
        (uuid.UUID(alice.user_id),)
    ]
    with pytest.raises(Exception, match="permission denied"):
        await visible(alice.user_id, "SELECT device_id FROM users")
    await db.rollback()
    with pytest.raises(Exception, match="permission denied"):
        await visible(alice.user_id, "SELECT token_hash FROM refresh_tokens")
    await db.rollback()


async def test_a_deleted_job_leaves_the_table_read(client: httpx.AsyncClient) -> None:
    """As in get-video-jobs: a job the user deleted is gone from their history."""
    user = await guest(client)
    kept = (await generate(client, user.headers)).json()["job_id"]
    gone = (await generate(client, user.headers)).json()["job_id"]
    deleted = await client.post(
        "/functions/v1/delete-video-job", json={"job_id": gone}, headers=user.headers
    )
    assert deleted.status_code == 200
    rows = await client.get("/rest/v1/video_jobs?select=job_id", headers=swift_headers(user))
    assert rows.json() == [{"job_id": kept}]
