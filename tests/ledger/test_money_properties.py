"""A property test over every way money moves: grants, deducts, purchases (and replays),
purchase refunds and their reversals, guest merges. After each step the ledger invariant holds
and every balance equals a plain-Python model of what it should be."""

import uuid
from dataclasses import dataclass, field

import pytest
from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.models.Type import Type
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from rendio.accounts.service import merge_guest
from rendio.credits import purchases
from rendio.credits.products import Product, ProductList
from rendio.ledger import service as ledger
from rendio.ledger.audit import ledger_offences
from rendio.ledger.service import Reason
from rendio.platform.db import session_factory
from rendio.platform.errors import InsufficientCredits, PurchaseInvalid

PACK = ProductList(products=[Product(product_id="pack", credits=10, display_name="10")])

steps = st.lists(
    st.tuples(
        st.sampled_from(["grant", "deduct", "purchase", "replay", "refund", "restore", "merge"]),
        st.integers(min_value=0, max_value=3),  # a user
        st.integers(min_value=0, max_value=3),  # another user, or which purchase
        st.integers(min_value=1, max_value=12),  # an amount
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class Model:
    balances: dict[uuid.UUID, int]
    closed: set[uuid.UUID] = field(default_factory=set)
    # transaction id → [owner, credits taken back by a refund, or None while credited]
    bought: dict[str, list] = field(default_factory=dict)


def transaction(tid: str) -> JWSTransactionDecodedPayload:
    return JWSTransactionDecodedPayload(
        transactionId=tid, productId="pack", type=Type.CONSUMABLE, quantity=1
    )


async def apply(
    session: AsyncSession, model: Model, users: list[uuid.UUID], step: tuple[str, int, int, int]
) -> None:
    kind, a, b, amount = step
    user, other = users[a], users[b]
    tids = sorted(model.bought)
    if user in model.closed and kind not in ("refund", "restore"):
        return  # a closed guest has no sessions left to act with
    if kind == "grant":
        await ledger.add(
            session, user, amount, reason=Reason.INITIAL_GRANT, transaction_id=str(uuid.uuid4())
        )
        model.balances[user] += amount
    elif kind == "deduct":
        await ledger.deduct(
            session, user, amount, reason=Reason.GENERATION, transaction_id=str(uuid.uuid4())
        )
        model.balances[user] -= amount
    elif kind == "purchase":
        tid = str(uuid.uuid4())
        await purchases.redeem(session, user, transaction(tid), PACK)
        model.bought[tid] = [user, None]
        model.balances[user] += 10
    elif kind == "replay" and tids:
        tid = tids[b % len(tids)]
        if model.bought[tid][0] == user:
            result = await purchases.redeem(session, user, transaction(tid), PACK)
            assert result.already_processed
        else:
            with pytest.raises(PurchaseInvalid):
                await purchases.redeem(session, user, transaction(tid), PACK)
    elif kind == "refund" and tids:
        tid = tids[b % len(tids)]
        await purchases._take_back(session, transaction(tid), str(uuid.uuid4()), PACK)
        owner, taken = model.bought[tid]
        if taken is None:
            taken = min(10, model.balances[owner])
            model.balances[owner] -= taken
            model.bought[tid][1] = taken
    elif kind == "restore" and tids:
        tid = tids[b % len(tids)]
        await purchases._restore(session, tid, str(uuid.uuid4()))
        owner, taken = model.bought[tid]
        if taken is not None:
            model.balances[owner] += taken
            model.bought[tid][1] = None
    elif kind == "merge" and other != user and other not in model.closed:
        await merge_guest(session, user, other)
        model.balances[other] += model.balances[user]
        model.balances[user] = 0
        model.closed.add(user)
        for entry in model.bought.values():
            if entry[0] == user:
                entry[0] = other


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
async def test_every_money_movement_keeps_the_ledger_true(
    engine: AsyncEngine, clean_database: str, steps: list[tuple[str, int, int, int]]
) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        users = [
            (
                await session.execute(text("INSERT INTO users DEFAULT VALUES RETURNING id"))
            ).scalar_one()
            for _ in range(4)
        ]
        await session.commit()
    model = Model(balances=dict.fromkeys(users, 0))

    for step in steps:
        async with sessions() as session:
            try:
                await apply(session, model, users, step)
                await session.commit()
            except InsufficientCredits:
                await session.rollback()
        async with engine.connect() as conn:
            assert await conn.run_sync(ledger_offences) == []
            rows = await conn.execute(
                text("SELECT id, credits_remaining FROM users WHERE id = ANY(:ids)"),
                {"ids": users},
            )
            assert dict(rows.all()) == model.balances


async def test_a_refund_after_a_merge_takes_from_where_the_credits_went(
    db: AsyncSession,
) -> None:
    guest, account = [
        (await db.execute(text("INSERT INTO users DEFAULT VALUES RETURNING id"))).scalar_one()
        for _ in range(2)
    ]
    await purchases.redeem(db, guest, transaction("t-1"), PACK)
    await merge_guest(db, guest, account)
    assert (await purchases.redeem(db, account, transaction("t-1"), PACK)).already_processed
    await purchases._take_back(db, transaction("t-1"), "n-1", PACK)
    assert (await ledger.balance(db, account))[0] == 0
    assert (await ledger.balance(db, guest))[0] == 0
    await db.commit()
