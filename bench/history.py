"""History pages stay flat in table size: page 1 and page 10,000 of one user's 200,000 jobs
among 1,000,000, measured in the same run.

    .venv/bin/python bench/history.py [--database-url URL] [--jobs 1000000] [--mine 200000]

It creates a fresh database on the server, fills it (one user with `--mine` jobs, the rest
spread over 800 others), then follows the real page statement (`generation/jobs.py`, limit
20 + 1) from page 1 cursor by cursor to page 10,000, and prints the database time of both
pages (EXPLAIN ANALYZE) and their plans.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from tests.helpers.database import create_database, drop_database  # noqa: E402

from rendio.catalog.schemas import model_id_for  # noqa: E402
from rendio.generation import jobs  # noqa: E402
from rendio.platform.db import create_engine, sync_engine  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402

MODEL = str(model_id_for("rendio-local"))
PAGE_SIZE = 20


def fill(url: str, total: int, mine: int) -> str:
    engine = sync_engine(url)
    with engine.begin() as conn:
        me = conn.execute(text("INSERT INTO users (is_guest) VALUES (true) RETURNING id")).scalar()
        conn.execute(text("INSERT INTO users (is_guest) SELECT true FROM generate_series(1, 800)"))
        conn.execute(
            text(
                "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, "
                "credits_used, deadline_at, status, created_at) "
                "SELECT :me, :model, 'mine ' || n, '{}'::jsonb, 'local', 1, now(), 'completed', "
                "now() - make_interval(secs => n) FROM generate_series(1, :mine) AS n"
            ),
            {"me": me, "model": MODEL, "mine": mine},
        )
        conn.execute(
            text(
                "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, "
                "credits_used, deadline_at, status, created_at) "
                "SELECT u.id, :model, 'other', '{}'::jsonb, 'local', 1, now(), 'completed', "
                "now() - make_interval(secs => n) "
                "FROM generate_series(1, :others) AS n "
                "JOIN (SELECT id, row_number() OVER () - 1 AS k FROM users WHERE id <> :me) u "
                "  ON u.k = n % 800"
            ),
            {"me": me, "model": MODEL, "others": total - mine},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE video_jobs"))
    engine.dispose()
    return str(me)


async def measure(url: str, me: str, pages: int) -> None:
    engine = create_engine(url, pool_size=1)
    statement = jobs._PAGE_ACTIVE
    after: tuple[object, object] = (None, None)
    timings = {}
    async with engine.connect() as conn:
        for number in range(1, pages + 1):
            params = {
                "user_id": me,
                "status": None,
                "after_created": after[0],
                "after_job": after[1],
                "limit": PAGE_SIZE + 1,
            }
            if number in (1, pages):
                plan = await conn.execute(
                    text("EXPLAIN (ANALYZE, BUFFERS) " + str(statement.text)), params
                )
                lines = [row[0] for row in plan]
                timings[number] = lines
            started = time.perf_counter()
            rows = (await conn.execute(statement, params)).all()
            if number in (1, pages):
                print(f"page {number}: round trip {1000 * (time.perf_counter() - started):.2f} ms")
            last = rows[PAGE_SIZE - 1]
            after = (last.created_at, last.job_id)
    await engine.dispose()
    for number, lines in timings.items():
        print(f"\n--- plan of page {number} ---")
        print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--mine", type=int, default=200_000)
    args = parser.parse_args()
    name = "rendio_bench_history"
    url = create_database(args.database_url, name)
    try:
        prepare_database(url)
        started = time.perf_counter()
        me = fill(url, args.jobs, args.mine)
        took = time.perf_counter() - started
        print(f"filled {args.jobs} jobs ({args.mine} for one user) in {took:.0f} s")
        asyncio.run(measure(url, me, args.mine // PAGE_SIZE))
    finally:
        drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
