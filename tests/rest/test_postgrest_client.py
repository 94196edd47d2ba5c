"""supabase-py's own PostgREST client against a live `rendio serve`: every query form the app
uses, single and maybe_single on 0, 1 and 2 rows, counts, refused writes — and a property-based
search for a filter, `or` tree or ordering that shows another user's rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from postgrest.exceptions import APIError
from supabase import Client, create_client

from tests.helpers.processes import LiveServer, service_env, start_server

ANON_KEY = "rendio-anon-key-for-rest-tests"
VIDEO = {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"}


@pytest.fixture
def server(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_ANON_KEY=ANON_KEY,
    )
    live = start_server(["--no-worker"], env, tmp_path / "server.log")
    yield live
    live.stop()


def signed_in(server: LiveServer, device: str) -> tuple[Client, str]:
    """A supabase client holding the session of a new guest (device-check)."""
    client = create_client(server.base_url, ANON_KEY)
    checked = client.functions.invoke(
        "device-check",
        {"body": {"device_id": device, "device_token": f"phone-{device}"}, "responseType": "json"},
    )
    session = checked["session"]
    client.auth.set_session(session["access_token"], session["refresh_token"])
    return client, str(checked["user_id"])


def make_video(client: Client, prompt: str = "a paper boat") -> str:
    models = client.table("models").select("id").eq("provider", "local").execute().data
    answer = client.functions.invoke(
        "generate-video",
        {
            "body": {"model_id": models[0]["id"], "prompt": prompt, "settings": VIDEO},
            "headers": {"Idempotency-Key": str(uuid.uuid4())},
            "responseType": "json",
        },
    )
    return str(answer["job_id"])


def test_the_apps_reads(server: LiveServer) -> None:
    client, user_id = signed_in(server, "install-1")
    balance = client.table("users").select("credits_remaining").eq("id", user_id).single().execute()
    assert balance.data == {"credits_remaining": 10}

    catalog = (
        client.table("models")
        .select("*")
        .eq("is_available", True)
        .order("is_featured", desc=True)
        .execute()
    )
    assert catalog.data and all(m["is_available"] for m in catalog.data)

    first = make_video(client, "first boat")
    second = make_video(client, "second boat")
    page = (
        client.table("video_jobs")
        .select("job_id, status, prompt", count="exact")  # type: ignore[arg-type]
        .order("created_at", desc=True)
        .range(0, 0)
        .execute()
    )
    assert page.count == 2
    assert [row["job_id"] for row in page.data] == [second]
    found = (
        client.table("video_jobs")
        .select("job_id")
        .in_("job_id", [first, second])
        .ilike("prompt", "%FIRST%")
        .execute()
    )
    assert found.data == [{"job_id": first}]
    either = client.table("video_jobs").select("job_id").or_(f"job_id.eq.{first},status.eq.x")
    assert either.execute().data == [{"job_id": first}]
    history = client.table("quota_log").select("change, reason").order("id").limit(5).execute().data
    assert history[0]["change"] == 10 and len(history) == 3


def test_single_and_maybe_single(server: LiveServer) -> None:
    client, _ = signed_in(server, "install-2")
    jobs = client.table("video_jobs").select("job_id")
    assert jobs.maybe_single().execute() is None
    with pytest.raises(APIError) as none:
        client.table("video_jobs").select("job_id").single().execute()
    assert none.value.code == "PGRST116"
    only = make_video(client, "only")
    one = client.table("video_jobs").select("job_id").maybe_single().execute()
    assert one is not None and one.data == {"job_id": only}
    assert client.table("video_jobs").select("job_id").single().execute().data == {"job_id": only}
    make_video(client, "another")
    with pytest.raises(APIError) as two:
        client.table("video_jobs").select("job_id").single().execute()
    assert two.value.code == "PGRST116" and two.value.details == "The result contains 2 rows"
    with pytest.raises(APIError):
        client.table("video_jobs").select("job_id").maybe_single().execute()


def test_writes_are_refused(server: LiveServer) -> None:
    client, user_id = signed_in(server, "install-3")
    with pytest.raises(APIError) as update:
        client.table("users").update({"credits_remaining": 999}).eq("id", user_id).execute()
    assert update.value.code == "42501"
    with pytest.raises(APIError) as insert:
        client.table("quota_log").insert({"change": 5}).execute()
    assert insert.value.code == "42501"
    with pytest.raises(APIError) as delete:
        client.table("video_jobs").delete().eq("user_id", user_id).execute()
    assert delete.value.code == "42501"
    balance = client.table("users").select("credits_remaining").single().execute()
    assert balance.data == {"credits_remaining": 10}


COLUMNS = {
    "users": ["id", "credits_remaining", "is_guest", "created_at", "language"],
    "video_jobs": ["user_id", "job_id", "status", "prompt", "credits_used", "created_at"],
    "quota_log": ["user_id", "id", "change", "reason", "job_id", "balance_after"],
}
OWNER = {"users": "id", "video_jobs": "user_id", "quota_log": "user_id"}
OPERATORS = ["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "isdistinct"]


@st.composite
def conditions(draw: st.DrawFn, table: str, values: list[str], depth: int = 0) -> str:
    """A filter or a nested and/or tree, in the dotted form used inside `or=(…)`."""
    if depth < 2 and draw(st.booleans()):
        conjunction = draw(st.sampled_from(["and", "or", "not.and", "not.or"]))
        items = draw(st.lists(conditions(table, values, depth + 1), min_size=1, max_size=3))
        return f"{conjunction}({','.join(items)})"
    column = draw(st.sampled_from(COLUMNS[table]))
    operator = draw(st.sampled_from(OPERATORS))
    negate = "not." if draw(st.booleans()) else ""
    if operator == "is":
        value = draw(st.sampled_from(["null", "not_null", "true", "false"]))
    elif operator == "in":
        value = "(" + ",".join(draw(st.lists(st.sampled_from(values), max_size=3))) + ")"
    else:
        value = draw(st.sampled_from(values))
    return f"{column}.{negate}{operator}.{value}"


@st.composite
def queries(draw: st.DrawFn, values: list[str]) -> tuple[str, list[tuple[str, str]]]:
    table = draw(st.sampled_from(sorted(COLUMNS)))
    params: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 2))):
        item = draw(conditions(table, values))
        if item.startswith(("and(", "or(", "not.and(", "not.or(")):
            key, _, rest = item.partition("(")
            params.append((key, "(" + rest))
        else:
            column, _, rest = item.partition(".")
            params.append((column, rest))
    if draw(st.booleans()):
        column = draw(st.sampled_from(COLUMNS[table]))
        direction = draw(st.sampled_from(["asc", "desc", "desc.nullsfirst", "asc.nullslast"]))
        params.append(("order", f"{column}.{direction}"))
    return table, params


@pytest.fixture
def two_users(server: LiveServer) -> tuple[dict[str, str], str, str]:
    alice, alice_id = signed_in(server, "alice")
    bob, bob_id = signed_in(server, "bob")
    make_video(alice, "alice's boat")
    make_video(bob, "bob's boat")
    token = alice.auth.get_session()
    assert token is not None
    headers = {"apikey": ANON_KEY, "Authorization": f"Bearer {token.access_token}"}
    return headers, alice_id, bob_id


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_no_filter_shows_another_users_rows(
    server: LiveServer, two_users: tuple[dict[str, str], str, str], data: Any
) -> None:
    headers, alice_id, bob_id = two_users
    values = [
        alice_id,
        bob_id,
        bob_id.upper(),
        "10",
        "0",
        "pending",
        "*boat*",
        "%",
        "true",
        "2000-01-01",
        '"a,b"',
    ]
    table, params = data.draw(queries(values))
    response = httpx.get(f"{server.base_url}/rest/v1/{table}", params=params, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code == 200:
        owners = {row[OWNER[table]] for row in response.json()}
        assert owners <= {alice_id}, (table, params, owners)
    else:
        assert set(response.json()) == {"code", "message", "details", "hint"}
