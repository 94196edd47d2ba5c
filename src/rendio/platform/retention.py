"""Retention of the operational tables: webhook deliveries and the error log are kept
`RENDIO_LOG_RETENTION_DAYS` (30), then deleted in bounded batches that skip rows another
worker holds, so passes may run twice or side by side."""

from __future__ import annotations

import procrastinate
import structlog

from rendio.platform.services import CoreServices, services_of

log = structlog.get_logger(__name__)

# Run on procrastinate's own connection (psycopg's %-style parameters). The table and column
# names come from this module only.
_PURGE = (
    "WITH gone AS (DELETE FROM {table} WHERE id IN ("
    "  SELECT id FROM {table} WHERE {column} < now() - make_interval(secs => %(age)s)"
    "  LIMIT %(batch)s FOR UPDATE SKIP LOCKED) RETURNING 1) "
    "SELECT count(*) AS n FROM gone"
)
TABLES = {"webhook_deliveries": "received_at", "error_log": "created_at"}


async def purge_logs(context: procrastinate.JobContext, timestamp: int) -> dict[str, int]:
    settings = services_of(context.additional_context, CoreServices).settings
    return await purge_old_rows(
        context.app,
        age_seconds=settings.log_retention_days * 86_400,
        batch=settings.retention_batch,
        max_batches=settings.retention_max_batches,
    )


async def purge_old_rows(
    app: procrastinate.App, *, age_seconds: float, batch: int, max_batches: int
) -> dict[str, int]:
    purged = {}
    for table, column in TABLES.items():
        statement = _PURGE.format(table=table, column=column)
        total = 0
        for _ in range(max_batches):
            rows = await app.connector.execute_query_all_async(
                statement, age=age_seconds, batch=batch
            )
            removed = int(rows[0]["n"])
            total += removed
            if removed < batch:
                break
        purged[table] = total
    if any(purged.values()):
        log.info("old_rows_purged", **purged)
    return purged
