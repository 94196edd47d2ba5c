"""The admin API: every action does its one thing and writes its audit row in the same
transaction; non-admins are refused; bad input changes nothing; money moves only through the
ledger (the harness checks the ledger invariant after each test)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.admin import service
from rendio.admin.service import Actor
from tests.helpers.admin import add_job, admin_guest, scalar
from tests.helpers.clients import Guest, guest
from tests.helpers.factories import LOCAL_ID

F = "/functions/v1"


async def audit_rows(db: AsyncSession) -> list[Any]:
    rows = list(await db.execute(text("SELECT * FROM admin_actions ORDER BY id")))
    await db.commit()
    return rows


async def balance(db: AsyncSession, user: Guest) -> int:
    return int(
        await scalar(db, "SELECT credits_remaining FROM users WHERE id = :id", id=user.user_id)
    )


ACTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "admin-refund-credits", {"user_id": str(uuid.uuid4()), "amount": 1, "reason": "x"}),
    ("POST", "admin-adjust-credits", {"user_id": str(uuid.uuid4()), "change": 1, "reason": "x"}),
    ("POST", "admin-refund-job", {"job_id": str(uuid.uuid4()), "reason": "x"}),
    ("POST", "admin-set-model", {"model_id": "rendio-local", "is_available": False}),
    ("POST", "admin-ban-user", {"user_id": str(uuid.uuid4()), "reason": "x"}),
    ("POST", "admin-unban-user", {"user_id": str(uuid.uuid4())}),
    ("GET", "admin-user", {"user_id": str(uuid.uuid4())}),
    ("GET", "admin-stats", {}),
    ("GET", "admin-actions", {}),
]


async def call(
    client: httpx.AsyncClient, method: str, name: str, body: dict[str, Any], headers: Any
) -> httpx.Response:
    if method == "GET":
        return await client.get(f"{F}/{name}", params=body, headers=headers)
    return await client.post(f"{F}/{name}", json=body, headers=headers)


async def test_non_admins_are_refused_everywhere_and_nothing_changes(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    user = await guest(client, "plain")
    for method, name, body in ACTIONS:
        refused = await call(client, method, name, body, user.headers)
        assert refused.status_code == 403, (name, refused.text)
        assert refused.json()["error"]["code"] == "ERR_4010"
        anonymous = await call(client, method, name, body, {})
        assert anonymous.status_code == 401, name
    assert await audit_rows(db) == []
    assert await scalar(db, "SELECT is_available FROM models WHERE slug = 'rendio-local'") is True


async def test_refund_credits_moves_money_through_the_ledger_with_its_audit_row(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    before = await balance(db, user)
    answer = await client.post(
        f"{F}/admin-refund-credits",
        json={"user_id": user.user_id, "amount": 5, "reason": "  video was blurry  "},
        headers={**admin.headers, "X-Request-Id": "req-refund-1"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["before"] == {"credits_remaining": before}
    assert body["after"] == {"credits_remaining": before + 5}
    assert await balance(db, user) == before + 5
    ledger = (
        await db.execute(
            text("SELECT change, reason, details FROM quota_log WHERE user_id = :u ORDER BY id"),
            {"u": user.user_id},
        )
    ).all()
    await db.commit()
    assert (ledger[-1].change, ledger[-1].reason) == (5, "admin_refund")
    assert ledger[-1].details == {"actor": f"admin:{admin.user_id}", "reason": "video was blurry"}
    [row] = await audit_rows(db)
    assert row.id == body["action_id"]
    assert (row.action, row.actor, row.reason) == (
        "refund_credits",
        f"admin:{admin.user_id}",
        "video was blurry",
    )
    assert str(row.admin_id) == admin.user_id and str(row.target_user_id) == user.user_id
    assert row.request_id == "req-refund-1"
    assert (row.before, row.after) == (body["before"], body["after"])


async def test_adjust_credits_both_ways_and_never_below_zero(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    start = await balance(db, user)
    for change in (7, -3):
        answer = await client.post(
            f"{F}/admin-adjust-credits",
            json={"user_id": user.user_id, "change": change, "reason": "support ticket 12"},
            headers=admin.headers,
        )
        assert answer.status_code == 200, answer.text
    assert await balance(db, user) == start + 4
    too_much = await client.post(
        f"{F}/admin-adjust-credits",
        json={"user_id": user.user_id, "change": -(start + 5), "reason": "oops"},
        headers=admin.headers,
    )
    assert too_much.status_code == 402
    assert too_much.json()["error"]["details"] == {
        "required": start + 5,
        "available": start + 4,
    }
    assert await balance(db, user) == start + 4
    assert [row.action for row in await audit_rows(db)] == ["adjust_credits", "adjust_credits"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("admin-refund-credits", {"amount": 0, "reason": "x"}),
        ("admin-refund-credits", {"amount": -5, "reason": "x"}),
        ("admin-refund-credits", {"amount": 5, "reason": "   "}),
        ("admin-refund-credits", {"amount": 5}),
        ("admin-refund-credits", {"amount": 5, "reason": "x", "extra": 1}),
        ("admin-refund-credits", {"amount": 10**9, "reason": "x"}),
        ("admin-refund-credits", {"amount": "5", "reason": "x", "user_id": "not-a-uuid"}),
        ("admin-adjust-credits", {"change": 0, "reason": "x"}),
        ("admin-adjust-credits", {"change": 1.5, "reason": "x"}),
        ("admin-ban-user", {"reason": ""}),
        ("admin-set-model", {"model_id": "rendio-local"}),
        ("admin-set-model", {"model_id": "rendio-local", "price": 0}),
        ("admin-refund-job", {"job_id": "123", "reason": "x"}),
    ],
)
async def test_bad_input_is_422_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, name: str, body: dict[str, Any]
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    before = await balance(db, user)
    answer = await client.post(
        f"{F}/{name}", json={"user_id": user.user_id, **body}, headers=admin.headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "ERR_4013"
    assert await balance(db, user) == before
    assert await audit_rows(db) == []


async def test_unknown_targets_are_404_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    nobody = str(uuid.uuid4())
    for name, body in [
        ("admin-refund-credits", {"user_id": nobody, "amount": 1, "reason": "x"}),
        ("admin-adjust-credits", {"user_id": nobody, "change": -1, "reason": "x"}),
        ("admin-refund-job", {"job_id": nobody, "reason": "x"}),
        ("admin-set-model", {"model_id": "no-such-model", "is_featured": True}),
        ("admin-ban-user", {"user_id": nobody, "reason": "x"}),
    ]:
        answer = await client.post(f"{F}/{name}", json=body, headers=admin.headers)
        assert answer.status_code == 404, (name, answer.text)
    missing = await client.get(
        f"{F}/admin-user", params={"device_id": "nope"}, headers=admin.headers
    )
    assert missing.status_code == 404
    assert await audit_rows(db) == []


async def test_a_job_is_refunded_by_hand_once_ever_and_only_when_it_has_ended(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    start = await balance(db, user)
    completed = await add_job(db, user, "completed", cost=3)
    running = await add_job(db, user, "processing")
    free = await add_job(db, user, "completed", cost=0)

    async def refund(job_id: str) -> httpx.Response:
        return await client.post(
            f"{F}/admin-refund-job", json={"job_id": job_id, "reason": "bad"}, headers=admin.headers
        )

    first = await refund(completed)
    assert first.status_code == 200, first.text
    assert first.json()["after"] == {"credits_remaining": start + 3}
    for job_id, problem in [
        (completed, "already refunded"),
        (running, "still running"),
        (free, "cost nothing"),
    ]:
        refused = await refund(job_id)
        assert refused.status_code == 422, refused.text
        assert problem in refused.json()["error"]["details"]["fields"][0]["problem"]
    assert await balance(db, user) == start + 3
    [row] = await audit_rows(db)
    assert (row.action, str(row.target_job_id)) == ("refund_job", completed)
    refunds = await scalar(
        db, "SELECT count(*) FROM quota_log WHERE transaction_id = :t", t=f"refund:{completed}"
    )
    assert refunds == 1


async def test_a_failed_job_refunded_by_the_worker_is_not_refunded_again(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    from rendio.generation import jobs
    from rendio.ledger import service as ledger
    from rendio.ledger.service import Reason
    from rendio.platform.errors import ErrorCode

    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "customer")
    job_id = await add_job(db, user, "processing", cost=2)
    # The charge the job stands for, so that its automatic refund keeps the ledger exact.
    await ledger.deduct(
        db,
        uuid.UUID(user.user_id),
        2,
        reason=Reason.GENERATION,
        transaction_id=f"generation:{job_id}",
        job_id=uuid.UUID(job_id),
    )
    assert await jobs.fail(db, uuid.UUID(job_id), ErrorCode.PROVIDER_REJECTED, "nsfw")
    await db.commit()
    refused = await client.post(
        f"{F}/admin-refund-job", json={"job_id": job_id, "reason": "x"}, headers=admin.headers
    )
    assert refused.status_code == 422
    assert "already refunded" in refused.text


async def test_set_model_changes_what_clients_are_offered_and_the_price(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    answer = await client.post(
        f"{F}/admin-set-model",
        json={"model_id": LOCAL_ID, "price": 4, "is_featured": True, "reason": "promo"},
        headers=admin.headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["after"]["cost_per_generation"] == 4
    models = (await client.get(f"{F}/get-models")).json()["models"]
    [local] = [m for m in models if m["id"] == LOCAL_ID]
    assert local["cost_per_generation"] == 4 and local["is_featured"] is True
    off = await client.post(
        f"{F}/admin-set-model",
        json={"model_id": "rendio-local", "is_available": False},
        headers=admin.headers,
    )
    assert off.status_code == 200
    assert LOCAL_ID not in [m["id"] for m in (await client.get(f"{F}/get-models")).json()["models"]]
    per_second = await client.post(
        f"{F}/admin-set-model",
        json={"model_id": "fal-veo-3-fast", "price": 3},
        headers=admin.headers,
    )
    assert per_second.status_code == 422 and "per second" in per_second.text
    rows = await audit_rows(db)
    assert [str(row.target_model_id) for row in rows] == [LOCAL_ID, LOCAL_ID]
    assert rows[0].before["cost_per_generation"] != 4 and rows[0].after["cost_per_generation"] == 4


async def test_a_ban_ends_every_session_at_once_and_unban_lets_the_user_back(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "troll")
    assert (await client.get(f"{F}/get-user-credits", headers=user.headers)).status_code == 200
    ban = await client.post(
        f"{F}/admin-ban-user",
        json={"user_id": user.user_id, "reason": "abuse"},
        headers=admin.headers,
    )
    assert ban.status_code == 200, ban.text
    assert ban.json()["before"] == {"banned_at": None} and ban.json()["after"]["banned_at"]
    refused = await client.get(f"{F}/get-user-credits", headers=user.headers)
    assert refused.status_code == 403
    refresh = await client.post(
        "/auth/v1/token",
        params={"grant_type": "refresh_token"},
        json={"refresh_token": user.session["refresh_token"]},
    )
    assert refresh.status_code == 400
    revoked = await scalar(
        db,
        "SELECT count(*) FROM auth_sessions WHERE user_id = :u AND revoked_at IS NULL",
        u=user.user_id,
    )
    assert revoked == 0
    self_ban = await client.post(
        f"{F}/admin-ban-user", json={"user_id": admin.user_id, "reason": "x"}, headers=admin.headers
    )
    assert self_ban.status_code == 422
    unban = await client.post(
        f"{F}/admin-unban-user", json={"user_id": user.user_id}, headers=admin.headers
    )
    assert unban.status_code == 200 and unban.json()["after"] == {"banned_at": None}
    # The old session stays revoked; the device signs in again.
    assert (await client.get(f"{F}/get-user-credits", headers=user.headers)).status_code == 401
    again = await guest(client, "troll")
    assert again.user_id == user.user_id
    assert (await client.get(f"{F}/get-user-credits", headers=again.headers)).status_code == 200
    assert [row.action for row in await audit_rows(db)] == ["ban_user", "unban_user"]


async def test_admin_user_finds_an_account_by_any_of_its_keys(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    user = await guest(client, "phone-7")
    await add_job(db, user, "completed")
    await client.post(
        f"{F}/admin-refund-credits",
        json={"user_id": user.user_id, "amount": 2, "reason": "x"},
        headers=admin.headers,
    )
    for params in ({"user_id": user.user_id}, {"device_id": "phone-7"}):
        answer = await client.get(f"{F}/admin-user", params=params, headers=admin.headers)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["user"]["id"] == user.user_id
        assert report["user"]["credits_remaining"] == await balance(db, user)
        assert [row["reason"] for row in report["ledger"]] == ["admin_refund", "initial_grant"]
        assert len(report["jobs"]) == 1 and report["actions"][0]["action"] == "refund_credits"
    for params in ({}, {"user_id": user.user_id, "device_id": "phone-7"}, {"user_id": "x"}):
        bad = await client.get(f"{F}/admin-user", params=params, headers=admin.headers)
        assert bad.status_code == 422, params


async def test_admin_actions_pages_newest_first_without_repeats(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_guest(client, db, "admin")
    users = [await guest(client, f"c{n}") for n in range(3)]
    for n in range(5):
        await client.post(
            f"{F}/admin-refund-credits",
            json={"user_id": users[n % 3].user_id, "amount": 1, "reason": f"r{n}"},
            headers=admin.headers,
        )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"{F}/admin-actions", params=params, headers=admin.headers)).json()
        seen += [row["reason"] for row in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == ["r4", "r3", "r2", "r1", "r0"]
    mine = await client.get(
        f"{F}/admin-actions", params={"user_id": users[0].user_id}, headers=admin.headers
    )
    assert [row["reason"] for row in mine.json()["data"]] == ["r3", "r0"]
    for bad in ({"cursor": "abc"}, {"limit": 0}, {"limit": 10_000}):
        answer = await client.get(f"{F}/admin-actions", params=bad, headers=admin.headers)
        assert answer.status_code == 422


async def test_an_action_and_its_audit_row_commit_together_or_not_at_all(
    client: httpx.AsyncClient, db: AsyncSession, engine: Any
) -> None:
    """The audit insert fails after the ledger moved (a request id too long for its column):
    the transaction rolls back and neither the credits nor a ledger row remain."""
    from rendio.platform.db import session_factory

    user = await guest(client, "customer")
    before = await balance(db, user)
    rows_before = await scalar(db, "SELECT count(*) FROM quota_log")
    broken = Actor("cli:test", None, "r" * 500)
    with pytest.raises(Exception, match="too long"):
        async with session_factory(engine).begin() as session:
            await service.refund_credits(session, broken, uuid.UUID(user.user_id), 9, "x")
    assert await balance(db, user) == before
    assert await scalar(db, "SELECT count(*) FROM quota_log") == rows_before
    assert await audit_rows(db) == []
