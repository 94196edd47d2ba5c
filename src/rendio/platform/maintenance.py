"""Housekeeping the worker runs on a schedule (retention windows from SPEC §5)."""

from __future__ import annotations

import procrastinate
import structlog

log = structlog.get_logger(__name__)


async def purge_expired_idempotency_keys(context: procrastinate.JobContext, timestamp: int) -> int:
    """Keys older than their 24 h window count as new again (Stripe's rule), so drop them."""
    connector = context.app.connector
    rows = await connector.execute_query_all_async(
        "WITH gone AS (DELETE FROM idempotency_log WHERE expires_at < now() RETURNING 1) "
        "SELECT count(*) AS n FROM gone"
    )
    purged = int(rows[0]["n"])
    log.info("idempotency_keys_purged", count=purged, scheduled_at=timestamp)
    return purged


def register(app: procrastinate.App) -> None:
    task = app.task(name="maintenance:purge_expired_idempotency_keys", pass_context=True)(
        purge_expired_idempotency_keys
    )
    app.periodic(cron="*/15 * * * *")(task)
