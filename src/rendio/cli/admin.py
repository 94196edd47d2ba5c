"""`rendio admin …`: the admin actions from a shell, through the same service functions as the
admin API, each with its audit row (actor `cli:<login>`). Tables for people, `--json` for
scripts. `grant` makes the first admin."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table

from rendio.cli.common import DataDir, database, exit_on_sigterm, fail, settings_from
from rendio.cli.common import console as out

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from rendio.admin.service import Done

admin_app = typer.Typer(
    help="Admin actions (audited) and reports: grant the first admin with `rendio admin grant`.",
    no_args_is_help=True,
)
Result = TypeVar("Result")

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit log).")]
OptionalReason = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit log).")]
UserId = Annotated[uuid.UUID, typer.Argument(help="The user's id.")]


def _run(data_dir: Any, work: Callable[[AsyncSession], Awaitable[Result]]) -> Result:
    """Run `work` in one transaction on the (started, migrated) database; an AppError (an
    unknown user, a refused refund) is printed and exits 1 with nothing changed."""
    from rendio.platform import i18n
    from rendio.platform.db import create_engine, session_factory
    from rendio.platform.errors import AppError

    exit_on_sigterm()
    url = database(settings_from(data_dir))

    async def run() -> Result:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except AppError as error:
        message = i18n.message(error.code.value, "en", error.details)
        detail = json.dumps(error.details, default=str) if error.details else ""
        fail(f"{error.code.value}: {message} {detail}".strip(), code=1)


def _print(value: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        out.print_json(json.dumps(value, default=str))
    else:
        human()


def _show_done(done: Done, as_json: bool) -> None:
    value = {"action_id": done.action_id, "before": done.before, "after": done.after}

    def human() -> None:
        table = Table("field", "before", "after", title=f"audit row {done.action_id}")
        for key in sorted(done.before.keys() | done.after.keys()):
            table.add_row(key, str(done.before.get(key)), str(done.after.get(key)))
        out.print(table)

    _print(value, as_json, human)


def _act(
    data_dir: Any, as_json: bool, action: Callable[[AsyncSession, Any], Awaitable[Done]]
) -> None:
    from rendio.admin.service import Actor

    actor = Actor.cli()
    _show_done(_run(data_dir, lambda session: action(session, actor)), as_json)


@admin_app.command()
def grant(
    user_id: UserId, reason: OptionalReason = "", as_json: Json = False, data_dir: DataDir = None
) -> None:
    """Make USER_ID an admin."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.set_admin(s, a, user_id, reason, admin=True))


@admin_app.command()
def revoke(
    user_id: UserId, reason: OptionalReason = "", as_json: Json = False, data_dir: DataDir = None
) -> None:
    """Stop USER_ID being an admin."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.set_admin(s, a, user_id, reason, admin=False))


@admin_app.command()
def refund(
    user_id: UserId,
    amount: Annotated[int, typer.Argument(min=1, max=1_000_000, help="Credits to give back.")],
    reason: ReasonOption,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Give USER_ID AMOUNT credits back."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.refund_credits(s, a, user_id, amount, reason))


@admin_app.command("refund-job")
def refund_job(
    job_id: Annotated[uuid.UUID, typer.Argument(help="The job's id.")],
    reason: ReasonOption,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Refund what a completed job cost (once per job, ever)."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.refund_job(s, a, job_id, reason))


@admin_app.command()
def adjust(
    user_id: UserId,
    change: Annotated[
        int,
        typer.Argument(
            min=-1_000_000, max=1_000_000, help="Credits to add; negative takes (after `--`)."
        ),
    ],
    reason: ReasonOption,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Add CHANGE credits to USER_ID, or take them if negative (`adjust ID -- -5`); never
    below 0."""
    from rendio.admin import service

    if change == 0:
        fail("CHANGE must not be 0")
    _act(data_dir, as_json, lambda s, a: service.adjust_credits(s, a, user_id, change, reason))


@admin_app.command()
def ban(
    user_id: UserId, reason: ReasonOption, as_json: Json = False, data_dir: DataDir = None
) -> None:
    """Ban USER_ID: every session ends at once."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.set_banned(s, a, user_id, reason, banned=True))


@admin_app.command()
def unban(
    user_id: UserId, reason: OptionalReason = "", as_json: Json = False, data_dir: DataDir = None
) -> None:
    """Lift USER_ID's ban."""
    from rendio.admin import service

    _act(data_dir, as_json, lambda s, a: service.set_banned(s, a, user_id, reason, banned=False))


@admin_app.command("set-model")
def set_model(
    model: Annotated[str, typer.Argument(help="The model's id or slug.")],
    available: Annotated[bool | None, typer.Option("--available/--unavailable")] = None,
    featured: Annotated[bool | None, typer.Option("--featured/--not-featured")] = None,
    price: Annotated[
        int | None, typer.Option(min=1, max=1_000_000, help="Credits per job.")
    ] = None,
    reason: OptionalReason = "",
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """Switch MODEL on or off, feature it, or set its price."""
    from rendio.admin import service

    wanted = {"is_available": available, "is_featured": featured, "cost_per_generation": price}
    changes = {column: value for column, value in wanted.items() if value is not None}
    if not changes:
        fail("give at least one of --available/--unavailable, --featured/--not-featured, --price")
    _act(data_dir, as_json, lambda s, a: service.set_model(s, a, model, changes, reason))


@admin_app.command()
def user(
    user_id: Annotated[uuid.UUID | None, typer.Option("--id", help="The user's id.")] = None,
    device_id: Annotated[str | None, typer.Option("--device-id")] = None,
    apple_sub: Annotated[str | None, typer.Option("--apple-sub")] = None,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """One account: profile, balance, latest ledger rows, jobs and admin actions."""
    from rendio.admin.reports import user_report

    if sum(value is not None for value in (user_id, device_id, apple_sub)) != 1:
        fail("give exactly one of --id, --device-id, --apple-sub")
    report = _run(
        data_dir,
        lambda session: user_report(
            session, user_id=user_id, device_id=device_id, apple_sub=apple_sub
        ),
    )

    def human() -> None:
        profile = Table("field", "value", title="account")
        for key, value in report["user"].items():
            profile.add_row(key, str(value))
        out.print(profile)
        ledger = Table("id", "change", "reason", "balance after", "at", title="latest ledger rows")
        for row in report["ledger"]:
            ledger.add_row(
                str(row["id"]),
                str(row["change"]),
                row["reason"],
                str(row["balance_after"]),
                str(row["created_at"]),
            )
        out.print(ledger)
        jobs = Table("job", "status", "provider", "credits", "error", title="latest jobs")
        for row in report["jobs"]:
            jobs.add_row(
                str(row["job_id"]),
                row["status"],
                row["provider"],
                str(row["credits_used"]),
                row["error_code"] or "",
            )
        out.print(jobs)

    _print(report, as_json, human)


@admin_app.command()
def stats(
    since: Annotated[
        datetime | None, typer.Option(help="Start of the window (UTC) [default: 24 hours ago].")
    ] = None,
    as_json: Json = False,
    data_dir: DataDir = None,
) -> None:
    """The key metrics of a time window: generations, credits, purchases, refusals, errors."""
    from rendio.admin.reports import stats as compute

    until = datetime.now(UTC)
    start = (since or until - timedelta(hours=24)).replace(tzinfo=UTC)
    report = _run(data_dir, lambda session: compute(session, start, until))

    def human() -> None:
        table = Table("metric", "value", title=f"since {start:%Y-%m-%d %H:%M} UTC")
        generations = report["generations"]
        for status, count in generations["by_status"].items():
            table.add_row(f"jobs {status}", str(count))
        table.add_row("success rate", str(generations["success_rate"]))
        table.add_row("average seconds", str(generations["average_seconds"]))
        table.add_row("p95 seconds", str(generations["p95_seconds"]))
        for name in ("granted", "bought", "spent", "refunded"):
            table.add_row(f"credits {name}", str(report["credits"][name]))
        table.add_row("purchases", str(report["purchases"]["count"]))
        table.add_row("rate-limit hits", str(report["rate_limit_hits"]["total"]))
        for item in report["top_error_codes"]:
            table.add_row(f"errors {item['code']}", str(item["count"]))
        out.print(table)

    _print(report, as_json, human)
