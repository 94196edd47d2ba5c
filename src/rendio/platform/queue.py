"""The durable job queue: procrastinate on the service's own PostgreSQL.

No extra server to run; workers claim jobs with `FOR UPDATE SKIP LOCKED`, so any number of
`rendio worker` processes (or the one inside `rendio serve`) share the work. Tasks are defined
on blueprints in their domain's `tasks.py` and gathered here.
"""

from __future__ import annotations

import procrastinate
from procrastinate.schema import SchemaManager
from sqlalchemy import Connection, text

from rendio.platform.db import libpq_url


def ensure_queue_schema(conn: Connection) -> None:
    """Apply procrastinate's schema the first time; later versions bring their own migrations,
    which is why the dependency is pinned to one minor release."""
    exists = conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
    if exists is None:
        conn.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))


def create_queue(url: str) -> procrastinate.App:
    from rendio.platform.maintenance import maintenance

    # min_size=0: the API can start (and report not-ready) while the database is away.
    connector = procrastinate.PsycopgConnector(conninfo=libpq_url(url), min_size=0, max_size=4)
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(maintenance, namespace="maintenance")
    return app
