"""Retention of log-like tables (webhook deliveries, the error log, ops counts, push deliveries: the
composition root names them): rows older than `RENDIO_LOG_RETENTION_DAYS` (30) are deleted in
bounded batches that skip rows another worker holds, so passes may run twice or side by side."""

from __future__ import annotations

from collections.abc import Mapping

import procrastinate
import structlog

log = structlog.get_logger(__name__)

# Run on procrastinate's own connection (psycopg's %-style parameters). Table and column names
# come from the composition root's constant list, never from input.
# Rows are picked by `ctid`, so a table needs no `id` column (ops_counts has none).
_PURGE = (
    "WITH gone AS (DELETE FROM {table} WHERE ctid = ANY(ARRAY("
    "  SELECT ctid FROM {table} WHERE {column} < now() - make_interval(secs => %(age)s)"
    "  LIMIT %(batch)s FOR UPDATE SKIP LOCKED)) RETURNING 1) "
    "SELECT count(*) AS n FROM gone"
)


async def purge_old_rows(
    app: procrastinate.App,
    tables: Mapping[str, str],
    *,
    age_seconds: float,
    batch: int,
    max_batches: int,
) -> dict[str, int]:
    """Delete rows older than `age_seconds` from each table (name → its timestamp column)."""
    purged = {}
    for table, column in tables.items():
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
