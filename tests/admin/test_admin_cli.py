"""`rendio admin …` against a live database: the same actions as the API, audited with the CLI
as the actor; `--json` for scripts, tables for people; refusals exit 1 and change nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.admin import add_job, scalar
from tests.helpers.clients import guest
from tests.helpers.processes import run_cli


def admin_json(url: str, command: str, *args: str) -> Any:
    done = run_cli(url, "admin", command, "--json", *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_the_cli_grants_the_first_admin_and_acts_with_an_audit_row(
    client: httpx.AsyncClient, db: AsyncSession, clean_database: str
) -> None:
    first = await guest(client, "operator-phone")
    user = await guest(client, "customer")
    refused = await client.get("/functions/v1/admin-stats", headers=first.headers)
    assert refused.status_code == 403

    granted = admin_json(clean_database, "grant", first.user_id, "--reason", "first admin")
    assert (granted["before"], granted["after"]) == ({"is_admin": False}, {"is_admin": True})
    assert (await client.get("/functions/v1/admin-stats", headers=first.headers)).status_code == 200

    start = int(
        await scalar(db, "SELECT credits_remaining FROM users WHERE id = :u", u=user.user_id)
    )
    refund = admin_json(clean_database, "refund", user.user_id, "3", "-r", "sorry")
    assert refund["after"] == {"credits_remaining": start + 3}
    adjust = admin_json(clean_database, "adjust", user.user_id, "-r", "fix", "--", "-2")
    assert adjust["after"] == {"credits_remaining": start + 1}

    too_much = run_cli(clean_database, "admin", "adjust", user.user_id, "-r", "x", "--", "-1000")
    assert too_much.returncode == 1
    assert "ERR_4001" in too_much.stderr
    job_id = await add_job(db, user, "completed", cost=2)
    admin_json(clean_database, "refund-job", job_id, "-r", "blurry")
    again = run_cli(clean_database, "admin", "refund-job", job_id, "-r", "blurry")
    assert again.returncode == 1 and "already refunded" in again.stderr

    admin_json(clean_database, "ban", user.user_id, "-r", "abuse")
    assert (
        await client.get("/functions/v1/get-user-credits", headers=user.headers)
    ).status_code == 403
    admin_json(clean_database, "unban", user.user_id)

    rows = list(await db.execute(text("SELECT actor, action FROM admin_actions ORDER BY id")))
    await db.commit()
    assert {actor for actor, _ in rows} == {rows[0].actor} and rows[0].actor.startswith("cli:")
    assert [action for _, action in rows] == [
        "grant_admin",
        "refund_credits",
        "adjust_credits",
        "refund_job",
        "ban_user",
        "unban_user",
    ]

    report = admin_json(clean_database, "user", "--device-id", "customer")
    assert report["user"]["id"] == user.user_id
    assert report["user"]["credits_remaining"] == start + 3
    stats = admin_json(clean_database, "stats")
    assert stats["credits"]["refunded"] == 3 + 2
    table = run_cli(clean_database, "admin", "stats")
    assert table.returncode == 0 and "credits refunded" in table.stdout and "5" in table.stdout


def test_cli_input_errors_exit_2_and_unknown_users_exit_1(clean_database: str) -> None:
    bad_uuid = run_cli(clean_database, "admin", "refund", "not-a-uuid", "3", "-r", "x")
    assert bad_uuid.returncode == 2
    no_reason = run_cli(clean_database, "admin", "ban", "9b2f0e6c-7a65-4c4f-9d0a-0f2b8b3e1a11")
    assert no_reason.returncode == 2
    unknown = run_cli(clean_database, "admin", "grant", "9b2f0e6c-7a65-4c4f-9d0a-0f2b8b3e1a11")
    assert unknown.returncode == 1 and "ERR_4011" in unknown.stderr
