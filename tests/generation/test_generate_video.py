"""generate-video: validation, idempotency, the one-transaction charge, and races."""

import asyncio
import uuid
from typing import Any

import httpx
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.platform.db import libpq_url
from tests.helpers.clients import guest
from tests.helpers.factories import LOCAL_ID, add_models, generate, simulated_model, video_body


async def counts(db: AsyncSession) -> tuple[int, int, int, int]:
    row = await db.execute(
        text(
            "SELECT (SELECT count(*) FROM video_jobs), "
            "(SELECT count(*) FROM quota_log WHERE reason = 'generation'), "
            "(SELECT count(*) FROM idempotency_log), "
            "(SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'generation:advance_job')"
        )
    )
    jobs, charges, keys, tasks = row.one()
    return jobs, charges, keys, tasks


async def test_a_job_is_charged_created_and_queued_together(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    response = await generate(client, headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["credits_used"] == 1
    assert body["credits_remaining"] == 9
    assert await counts(db) == (1, 1, 1, 1)
    job = await db.execute(
        text("SELECT status, settings, prompt, deadline_at > now() FROM video_jobs")
    )
    status, settings, prompt, future_deadline = job.one()
    assert (status, prompt, future_deadline) == ("pending", "a paper boat on a river", True)
    assert settings == {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"}
    queued = await db.execute(text("SELECT args, lock FROM procrastinate_jobs"))
    args, lock = queued.one()
    assert args == {"job_id": body["job_id"]}
    assert lock == f"video-job:{body['job_id']}"


async def test_missing_settings_take_the_model_defaults(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    response = await generate(client, headers, {"model_id": LOCAL_ID, "prompt": "  a cat  "})
    assert response.status_code == 200
    job = await db.execute(text("SELECT settings, prompt FROM video_jobs"))
    settings, prompt = job.one()
    assert settings == {"duration": 4, "aspect_ratio": "9:16", "resolution": "360p"}
    assert prompt == "a cat"


async def test_replay_answers_the_stored_result_without_a_second_charge(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    first = await generate(client, headers, key="key-1")
    again = await generate(client, headers, key="key-1")
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["x-idempotent-replay"] == "true"
    assert "x-idempotent-replay" not in first.headers
    reordered = await client.post(
        "/functions/v1/generate-video",
        content=(
            b'{"settings": {"resolution": "360p", "aspect_ratio": "16:9", "duration": 2},'
            b' "prompt": "a paper boat on a river", "model_id": "' + LOCAL_ID.encode() + b'"}'
        ),
        headers={**headers, "Idempotency-Key": "key-1", "Content-Type": "application/json"},
    )
    assert reordered.json() == first.json(), "key order and spacing do not make a new request"
    assert await counts(db) == (1, 1, 1, 1)


async def test_a_retry_replays_even_after_the_model_is_switched_off(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    """The stored answer comes before any check of the request: the first one was charged."""
    headers = (await guest(client)).headers
    first = await generate(client, headers, key="key-1")
    await db.execute(text("UPDATE models SET is_available = false WHERE slug = 'rendio-local'"))
    await db.commit()
    again = await generate(client, headers, key="key-1")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["x-idempotent-replay"] == "true"
    refused = await generate(client, headers, key="key-2")
    assert refused.json()["error"]["code"] == "ERR_4002"
    assert await counts(db) == (1, 1, 1, 1)


async def test_an_expired_key_counts_as_new(client: httpx.AsyncClient, db: AsyncSession) -> None:
    headers = (await guest(client)).headers
    first = await generate(client, headers, key="key-1")
    await db.execute(text("UPDATE idempotency_log SET expires_at = now() - interval '1 second'"))
    await db.commit()
    again = await generate(client, headers, key="key-1")
    assert again.status_code == 200
    assert "x-idempotent-replay" not in again.headers
    assert again.json()["job_id"] != first.json()["job_id"]
    assert again.json()["credits_remaining"] == 8
    assert await counts(db) == (2, 2, 1, 2), "the expired answer is replaced by the new one"


async def test_a_refused_charge_leaves_the_key_free(
    client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    (pricey,) = add_models(clean_database, _priced("pricey", 25))
    headers = (await guest(client)).headers
    body = video_body(model_id=pricey, duration=1)
    assert (await generate(client, headers, body, key="key-1")).status_code == 402
    await db.execute(
        text(
            "WITH u AS (UPDATE users SET credits_remaining = credits_remaining + 20, "
            "credits_total = credits_total + 20 RETURNING id, credits_remaining) "
            "INSERT INTO quota_log (user_id, change, reason, transaction_id, balance_after) "
            "SELECT id, 20, 'admin_adjust', 'top-up', credits_remaining FROM u"
        )
    )
    await db.commit()
    paid = await generate(client, headers, body, key="key-1")
    assert paid.status_code == 200, paid.text
    assert "x-idempotent-replay" not in paid.headers
    assert paid.json()["credits_remaining"] == 5
    assert await counts(db) == (1, 1, 1, 1)


async def test_same_key_different_request_is_refused(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    await generate(client, headers, key="key-1")
    other = await generate(client, headers, video_body(prompt="something else"), key="key-1")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "ERR_4007"
    assert await counts(db) == (1, 1, 1, 1)


async def test_keys_are_per_user(client: httpx.AsyncClient, db: AsyncSession) -> None:
    alice = (await guest(client, "install-a")).headers
    bob = (await guest(client, "install-b")).headers
    assert (await generate(client, alice, key="shared")).status_code == 200
    assert (await generate(client, bob, key="shared")).status_code == 200
    assert (await counts(db))[0] == 2


async def test_missing_or_malformed_keys(client: httpx.AsyncClient, db: AsyncSession) -> None:
    headers = (await guest(client)).headers
    missing = await client.post("/functions/v1/generate-video", json=video_body(), headers=headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "ERR_4009"
    for bad in ["", "x" * 256, "has space", "tab\there"]:
        response = await client.post(
            "/functions/v1/generate-video",
            json=video_body(),
            headers={**headers, "Idempotency-Key": bad},
        )
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "ERR_4009"
    assert (await generate(client, headers, key="k" * 255)).status_code == 200
    assert (await counts(db))[0] == 1


async def test_a_key_held_by_a_request_in_flight_is_409_until_it_ends(
    client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    """Another transaction holding the key's lock is a request in flight; when its connection
    dies (a crashed request), the key is free again."""
    headers = (await guest(client)).headers
    user_id = (await db.execute(text("SELECT id FROM users"))).scalar_one()
    holder = psycopg.connect(libpq_url(clean_database))
    holder.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"idempotency:{user_id}:k-1"]
    )
    busy = await generate(client, headers, key="k-1")
    assert busy.status_code == 409
    assert busy.json()["error"]["code"] == "ERR_4008"
    holder.close()  # the in-flight request dies without committing
    assert (await generate(client, headers, key="k-1")).status_code == 200


async def test_validation_errors_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    cases: list[tuple[dict[str, Any], int, str]] = [
        (video_body(prompt="   "), 400, "ERR_4003"),
        (video_body(prompt="x" * 2001), 400, "ERR_4003"),
        (video_body(prompt="bell\x07"), 400, "ERR_4003"),
        (video_body(model_id=str(uuid.uuid4())), 400, "ERR_4002"),
        (video_body(duration=5), 422, "ERR_4013"),
        (video_body(aspect_ratio="4:3"), 422, "ERR_4013"),
        (video_body(resolution="4k"), 422, "ERR_4013"),
        ({"model_id": "not-a-uuid", "prompt": "x"}, 422, "ERR_4013"),
        ({"model_id": LOCAL_ID}, 422, "ERR_4013"),
        ({**video_body(), "extra": 1}, 422, "ERR_4013"),
        ({**video_body(), "image_url": "not a url"}, 422, "ERR_4013"),
        ({**video_body(), "user_id": str(uuid.uuid4())}, 403, "ERR_4010"),
    ]
    for body, status, code in cases:
        response = await generate(client, headers, body, key="same-key")
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["code"] == code, body
    assert await counts(db) == (0, 0, 0, 0)
    multiline = await generate(client, headers, video_body(prompt="line one\nline two"))
    assert multiline.status_code == 200


async def test_unavailable_models_are_refused(client: httpx.AsyncClient, db: AsyncSession) -> None:
    headers = (await guest(client)).headers
    await db.execute(text("UPDATE models SET is_available = false WHERE slug = 'rendio-local'"))
    await db.commit()
    response = await generate(client, headers)
    assert response.json()["error"]["code"] == "ERR_4002"
    sora = (await db.execute(text("SELECT id FROM models WHERE slug = 'sora-2'"))).scalar_one()
    response = await generate(client, headers, video_body(model_id=str(sora)))
    assert response.json()["error"]["code"] == "ERR_4002"


async def test_not_enough_credits_is_402_with_the_numbers(
    client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    (pricey,) = add_models(clean_database, _priced("pricey", 25))
    headers = (await guest(client)).headers
    response = await generate(client, headers, video_body(model_id=pricey, duration=1))
    assert response.status_code == 402
    assert response.json()["error"]["details"] == {"required": 25, "available": 10}
    assert await counts(db) == (0, 0, 0, 0)


def _priced(slug: str, cost: int) -> str:
    return simulated_model(slug, cost=cost)


async def test_fifty_parallel_requests_with_one_key_make_one_job(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    responses = await asyncio.gather(*(generate(client, headers, key="one") for _ in range(50)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 409}
    winners = [r.json() for r in responses if r.status_code == 200]
    assert winners and all(w == winners[0] for w in winners)
    assert await counts(db) == (1, 1, 1, 1)
    credits = (await db.execute(text("SELECT credits_remaining FROM users"))).scalar_one()
    assert credits == 9


async def test_thirty_parallel_requests_against_ten_credits(
    client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    (three,) = add_models(clean_database, _priced("three", 3))
    headers = (await guest(client)).headers
    responses = await asyncio.gather(
        *(generate(client, headers, video_body(model_id=three, duration=1)) for _ in range(30))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 3 + [402] * 27
    assert (await db.execute(text("SELECT credits_remaining FROM users"))).scalar_one() == 1
    assert (await counts(db))[:2] == (3, 3)


async def test_two_hundred_concurrent_requests_never_overdraw(
    client: httpx.AsyncClient, clean_database: str, db: AsyncSession
) -> None:
    """Issue 4's race over HTTP: 100 credits, cost 3, 200 at once → exactly 33 succeed."""
    (three,) = add_models(clean_database, _priced("three", 3))
    headers = (await guest(client)).headers
    await db.execute(
        text(
            "WITH u AS (UPDATE users SET credits_remaining = credits_remaining + 90, "
            "credits_total = credits_total + 90 RETURNING id, credits_remaining) "
            "INSERT INTO quota_log (user_id, change, reason, transaction_id, balance_after) "
            "SELECT id, 90, 'admin_adjust', 'top-up', credits_remaining FROM u"
        )
    )
    await db.commit()
    responses = await asyncio.gather(
        *(generate(client, headers, video_body(model_id=three, duration=1)) for _ in range(200))
    )
    assert sum(r.status_code == 200 for r in responses) == 33
    assert {r.status_code for r in responses} == {200, 402}
    assert (await db.execute(text("SELECT credits_remaining FROM users"))).scalar_one() == 1


async def test_a_lone_surrogate_in_the_prompt_is_an_invalid_prompt(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    headers = (await guest(client)).headers
    response = await client.post(
        "/functions/v1/generate-video",
        content=(b'{"model_id": "' + LOCAL_ID.encode() + b'", "prompt": "boat \\ud800"}'),
        headers={**headers, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "ERR_4003"
    assert await counts(db) == (0, 0, 0, 0)
