"""What one session-check statement costs the API process, by the way it is sent.

    .venv/bin/python bench/statement_cost.py \\
        [--database-url postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 2000]

On a fresh database with one guest and its session, the same statement (the session check
joined to the user row) is run `--rounds` times each way, one at a time, and the process's own
CPU per statement is reported (`time.process_time`: PostgreSQL's work is in another process):

* `lean read`: `platform/reads.py` — asyncpg's pool, one round trip;
* `psycopg autocommit`: the same through psycopg's pool (what `platform/reads.py` used before);
* `psycopg transaction`: the same connection kind with BEGIN … COMMIT around it;
* `sqlalchemy text`: an `AsyncSession` (the request's session), `text()`, commit;
* `sqlalchemy orm`: the `select(User, AuthSession.revoked_at)` the check used before.

Each way is measured twice, interleaved, so a noisy moment shows as disagreement.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.rows import DictRow, dict_row  # noqa: E402
from psycopg_pool import AsyncConnectionPool  # noqa: E402
from sqlalchemy import select, text  # noqa: E402
from tests.helpers.database import create_database, drop_database  # noqa: E402

from rendio.identity.dependencies import _SESSION_CHECK  # noqa: E402
from rendio.identity.models import AuthSession, User  # noqa: E402
from rendio.platform.db import create_engine, libpq_url, session_factory  # noqa: E402
from rendio.platform.reads import Reads  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402

SQL_TEXT = text(
    "SELECT u.*, s.revoked_at FROM auth_sessions s JOIN users u ON u.id = s.user_id"
    " WHERE s.id = :sid AND s.user_id = :uid"
)


async def measure(database_url: str, rounds: int) -> None:
    engine = create_engine(database_url, pool_size=2)
    sessions = session_factory(engine)
    reads = Reads(libpq_url(database_url), size=2)
    await reads.open()
    psycopg_pool: AsyncConnectionPool[psycopg.AsyncConnection[DictRow]] = AsyncConnectionPool(
        libpq_url(database_url),
        min_size=2,
        max_size=2,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row},
        connection_class=psycopg.AsyncConnection[DictRow],
    )
    await psycopg_pool.open()
    psycopg_check = _SESSION_CHECK.replace("$1", "%s").replace("$2", "%s")
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    async with sessions() as session:
        await session.execute(text("INSERT INTO users (id) VALUES (:id)"), {"id": user_id})
        await session.execute(
            text("INSERT INTO auth_sessions (id, user_id, amr) VALUES (:id, :uid, 'anonymous')"),
            {"id": session_id, "uid": user_id},
        )
        await session.commit()

    async def lean_read() -> None:
        await reads.one(_SESSION_CHECK, (session_id, user_id))

    async def psycopg_autocommit() -> None:
        async with psycopg_pool.connection() as connection:
            await (await connection.execute(psycopg_check, (session_id, user_id))).fetchone()

    async def psycopg_transaction() -> None:
        async with psycopg_pool.connection() as connection, connection.transaction():
            await (await connection.execute(psycopg_check, (session_id, user_id))).fetchone()

    async def sqlalchemy_text() -> None:
        async with sessions() as session:
            (await session.execute(SQL_TEXT, {"sid": session_id, "uid": user_id})).one()
            await session.commit()

    async def sqlalchemy_orm() -> None:
        async with sessions() as session:
            statement = (
                select(User, AuthSession.revoked_at)
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(AuthSession.id == session_id, User.id == user_id)
            )
            (await session.execute(statement)).one()
            await session.commit()

    ways: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("lean read", lean_read),
        ("psycopg autocommit", psycopg_autocommit),
        ("psycopg transaction", psycopg_transaction),
        ("sqlalchemy text", sqlalchemy_text),
        ("sqlalchemy orm", sqlalchemy_orm),
    ]
    results: dict[str, list[float]] = {name: [] for name, _ in ways}
    for _ in range(2):
        for name, way in ways:
            for _ in range(100):  # warm: pools filled, statements prepared
                await way()
            started = time.process_time()
            for _ in range(rounds):
                await way()
            results[name].append((time.process_time() - started) / rounds * 1e6)
    print("| way | CPU µs per statement (run 1) | (run 2) |")
    print("|---|---|---|")
    for name, (first, second) in results.items():
        print(f"| {name} | {first:.0f} | {second:.0f} |")
    await reads.aclose()
    await psycopg_pool.close()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    name = f"rendio_statement_cost_{uuid.uuid4().hex[:8]}"
    url = create_database(args.database_url, name)
    try:
        prepare_database(url)
        asyncio.run(measure(url, args.rounds))
    finally:
        drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
