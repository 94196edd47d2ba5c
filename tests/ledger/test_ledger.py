"""The credits service against real PostgreSQL: guarded, ledgered, race-free."""

import asyncio
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from rendio.ledger import service
from rendio.ledger.audit import ledger_offences
from rendio.ledger.service import DuplicateLedgerEntry, Reason
from rendio.platform.db import libpq_url, session_factory
from rendio.platform.errors import InsufficientCredits, NotFound
from tests.helpers.processes import credits_verify


async def new_user(session: AsyncSession) -> uuid.UUID:
    return (
        await session.execute(text("INSERT INTO users DEFAULT VALUES RETURNING id"))
    ).scalar_one()


async def ledger(session: AsyncSession, user_id: uuid.UUID) -> list[tuple]:
    rows = await session.execute(
        text("SELECT change, reason, balance_after FROM quota_log WHERE user_id = :u ORDER BY id"),
        {"u": user_id},
    )
    return [tuple(row) for row in rows]


async def test_add_and_deduct_write_their_ledger_rows(db: AsyncSession) -> None:
    user = await new_user(db)
    assert (
        await service.add(
            db, user, 10, reason=Reason.INITIAL_GRANT, transaction_id="g-1", lifetime=True
        )
        == 10
    )
    assert await service.deduct(db, user, 3, reason=Reason.GENERATION, transaction_id="d-1") == 7
    assert await service.add(db, user, 3, reason=Reason.REFUND, transaction_id="r-1") == 10
    assert await service.balance(db, user) == (10, 10)  # a refund is not lifetime credit
    assert await ledger(db, user) == [
        (10, "initial_grant", 10),
        (-3, "generation", 7),
        (3, "refund", 10),
    ]


async def test_insufficient_credits_changes_nothing(db: AsyncSession) -> None:
    user = await new_user(db)
    await service.add(db, user, 2, reason=Reason.INITIAL_GRANT, transaction_id="g-2")
    with pytest.raises(InsufficientCredits) as caught:
        await service.deduct(db, user, 5, reason=Reason.GENERATION, transaction_id="d-2")
    assert caught.value.details == {"required": 5, "available": 2}
    assert await service.balance(db, user) == (2, 0)
    assert len(await ledger(db, user)) == 1
    await db.commit()


async def test_unknown_user_is_not_found(db: AsyncSession) -> None:
    with pytest.raises(NotFound):
        await service.deduct(db, uuid.uuid4(), 1, reason=Reason.GENERATION, transaction_id="x")
    with pytest.raises(NotFound):
        await service.add(db, uuid.uuid4(), 1, reason=Reason.REFUND, transaction_id="y")


async def test_non_positive_amounts_are_refused(db: AsyncSession) -> None:
    user = await new_user(db)
    with pytest.raises(ValueError):
        await service.deduct(db, user, 0, reason=Reason.GENERATION, transaction_id="z")
    with pytest.raises(ValueError):
        await service.add(db, user, -4, reason=Reason.REFUND, transaction_id="z")


async def test_a_ledger_transaction_id_moves_credits_once(
    engine: AsyncEngine, db: AsyncSession
) -> None:
    user = await new_user(db)
    await service.add(db, user, 5, reason=Reason.INITIAL_GRANT, transaction_id="g-3")
    await db.commit()
    async with session_factory(engine)() as other:
        with pytest.raises(DuplicateLedgerEntry):
            await service.add(other, user, 5, reason=Reason.REFUND, transaction_id="g-3")
        await other.rollback()
    assert await service.balance(db, user) == (5, 0)


async def test_200_concurrent_deducts_never_overdraw(engine: AsyncEngine, db: AsyncSession) -> None:
    user = await new_user(db)
    await service.add(db, user, 100, reason=Reason.INITIAL_GRANT, transaction_id="g-4")
    await db.commit()
    sessions = session_factory(engine)

    async def spend(index: int) -> bool:
        async with sessions() as session:
            try:
                await service.deduct(
                    session, user, 3, reason=Reason.GENERATION, transaction_id=f"spend-{index}"
                )
            except InsufficientCredits:
                await session.rollback()
                return False
            await session.commit()
            return True

    results = await asyncio.gather(*(spend(i) for i in range(200)))
    assert sum(results) == 100 // 3
    assert await service.balance(db, user) == (100 % 3, 0)
    async with engine.connect() as conn:
        assert await conn.run_sync(ledger_offences) == []


ops = st.lists(
    st.tuples(
        st.sampled_from(["grant", "deduct", "refund", "replay"]),
        st.integers(min_value=0, max_value=2),  # which user
        st.integers(min_value=1, max_value=7),  # amount
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=ops)
async def test_the_invariant_holds_after_every_step(
    engine: AsyncEngine, clean_database: str, steps: list[tuple[str, int, int]]
) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        users = [await new_user(session) for _ in range(3)]
        await session.commit()
    expected = dict.fromkeys(users, 0)
    spent: list[tuple[uuid.UUID, int, str]] = []
    refunded: set[str] = set()

    for number, (kind, who, amount) in enumerate(steps):
        user = users[who]
        tx = f"{uuid.uuid4()}-{number}"
        async with sessions() as session:
            try:
                if kind == "grant":
                    await service.add(
                        session, user, amount, reason=Reason.PURCHASE, transaction_id=tx
                    )
                    expected[user] += amount
                elif kind == "deduct":
                    await service.deduct(
                        session, user, amount, reason=Reason.GENERATION, transaction_id=tx
                    )
                    expected[user] -= amount
                    spent.append((user, amount, tx))
                elif kind == "refund" and spent:
                    owner, paid, paid_tx = spent[amount % len(spent)]
                    await service.add(
                        session,
                        owner,
                        paid,
                        reason=Reason.REFUND,
                        transaction_id=f"refund:{paid_tx}",
                    )
                    if f"refund:{paid_tx}" not in refunded:
                        expected[owner] += paid
                    refunded.add(f"refund:{paid_tx}")
                elif kind == "replay" and spent:
                    owner, paid, paid_tx = spent[-1]
                    await service.deduct(
                        session, owner, paid, reason=Reason.GENERATION, transaction_id=paid_tx
                    )
                await session.commit()
            except (InsufficientCredits, DuplicateLedgerEntry):
                await session.rollback()
        async with engine.connect() as conn:
            assert await conn.run_sync(ledger_offences) == []
        async with sessions() as session:
            for each in users:
                assert (await service.balance(session, each))[0] == expected[each]
                assert expected[each] >= 0


def test_cli_verify_finds_and_names_offenders(clean_database: str) -> None:
    clean = credits_verify(clean_database)
    assert clean.returncode == 0, clean.stderr
    assert "consistent" in clean.stdout

    with psycopg.connect(libpq_url(clean_database), autocommit=True) as conn:
        user_id = conn.execute(
            "INSERT INTO users (credits_remaining) VALUES (7) RETURNING id"
        ).fetchone()[0]
        broken = credits_verify(clean_database)
        conn.execute("DELETE FROM users WHERE id = %s", (user_id,))  # repair before teardown
    assert broken.returncode == 1
    assert str(user_id) in broken.stderr
    assert "balance 7 but ledger sums to 0" in " ".join(broken.stderr.split())
