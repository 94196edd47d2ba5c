"""App Store purchases: credit a verified transaction once, take it back on refund, restore it
on a reversed refund — each through the ledger, in the request's transaction.

`purchases.transaction_id` is the first lock (one row per Apple transaction, whoever sends it);
the ledger's unique transaction ids are the second. A refund never takes a balance below zero:
what it could not take is recorded as `refund_shortfall` on the purchase and on the ledger row.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appstoreserverlibrary.models.JWSTransactionDecodedPayload import (
    JWSTransactionDecodedPayload,
)
from appstoreserverlibrary.models.NotificationTypeV2 import NotificationTypeV2
from appstoreserverlibrary.models.ResponseBodyV2DecodedPayload import (
    ResponseBodyV2DecodedPayload,
)
from appstoreserverlibrary.models.Type import Type
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.credits.appstore import AppStoreVerifier, Unverifiable
from rendio.credits.models import Purchase
from rendio.credits.products import ProductList
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform.deliveries import mark_processed, record_delivery
from rendio.platform.errors import NotFound, PurchaseInvalid

SOURCE = "app-store"
_LOCK_USER = text("SELECT 1 FROM users WHERE id = :id FOR UPDATE")
_MAX_QUANTITY = 100


_NEW_PURCHASE = text(
    "INSERT INTO purchases (transaction_id, original_transaction_id, user_id, "
    "product_id, credits, environment, purchased_at) "
    "VALUES (:tid, :original, :user_id, :product, :credits, :environment, :at) "
    "ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
)
_LOCK_BUYER = text("SELECT merged_into FROM users WHERE id = :id FOR UPDATE")
_TOMBSTONE = text(
    "INSERT INTO purchases (transaction_id, original_transaction_id, user_id, "
    "product_id, credits, environment, status, purchased_at) "
    "VALUES (:tid, :original, NULL, :product, :credits, :environment, 'refunded', "
    ":at) ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id"
)


@dataclass(frozen=True)
class Redemption:
    transaction_id: str
    credits_added: int
    credits_remaining: int
    already_processed: bool


def _purchase_date(transaction: JWSTransactionDecodedPayload) -> datetime | None:
    if transaction.purchaseDate is None:
        return None
    return datetime.fromtimestamp(transaction.purchaseDate / 1000, tz=UTC)


async def redeem(
    session: AsyncSession,
    user_id: uuid.UUID,
    transaction: JWSTransactionDecodedPayload,
    products: ProductList,
) -> Redemption:
    """Credit a verified consumable transaction to `user_id`, or answer its earlier result."""
    transaction_id = transaction.transactionId
    if not transaction_id or not transaction.productId:
        raise PurchaseInvalid({"reason": "incomplete transaction"})
    product = products.find(transaction.productId)
    if product is None:
        raise PurchaseInvalid({"reason": "unknown product", "product_id": transaction.productId})
    if transaction.type != Type.CONSUMABLE:
        raise PurchaseInvalid({"reason": "not a consumable", "product_id": product.product_id})
    if transaction.revocationDate is not None:
        raise PurchaseInvalid({"reason": "revoked"})
    quantity = transaction.quantity or 1
    if not 1 <= quantity <= _MAX_QUANTITY:
        raise PurchaseInvalid({"reason": "invalid quantity"})
    amount = product.credits * quantity
    owner = await _lock_account(session, user_id)

    inserted = (
        await session.execute(
            _NEW_PURCHASE,
            {
                "tid": transaction_id,
                "original": transaction.originalTransactionId,
                "user_id": owner,
                "product": product.product_id,
                "credits": amount,
                "environment": transaction.rawEnvironment or "",
                "at": _purchase_date(transaction),
            },
        )
    ).scalar_one_or_none()
    if inserted is None:
        return await _earlier_result(session, owner, transaction_id)
    remaining = await ledger.add(
        session,
        owner,
        amount,
        reason=Reason.PURCHASE,
        transaction_id=f"purchase:{transaction_id}",
        details={"product_id": product.product_id, "quantity": quantity},
        lifetime=True,
    )
    return Redemption(transaction_id, amount, remaining, already_processed=False)


async def _lock_account(session: AsyncSession, user_id: uuid.UUID) -> uuid.UUID:
    """Lock the buyer's row before anything else (the order merges and refunds use too) and
    return the account the credits belong to: a guest merged meanwhile sends them on."""
    buyer = (await session.execute(_LOCK_BUYER, {"id": user_id})).one_or_none()
    if buyer is None:  # the account was deleted after the request was authenticated
        raise NotFound({"user_id": str(user_id)})
    merged_into: uuid.UUID | None = buyer.merged_into
    if merged_into is None:
        return user_id
    await _lock_user(session, merged_into)
    return merged_into


async def _lock_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    await session.execute(_LOCK_USER, {"id": user_id})


async def _earlier_result(
    session: AsyncSession, owner: uuid.UUID, transaction_id: str
) -> Redemption:
    earlier = (
        await session.execute(
            select(Purchase.user_id, Purchase.credits, Purchase.status).where(
                Purchase.transaction_id == transaction_id
            )
        )
    ).one()
    if earlier.user_id != owner:
        reason = "revoked" if earlier.status == "refunded" else "already used by another account"
        raise PurchaseInvalid({"reason": f"transaction {reason}"})
    remaining, _ = await ledger.balance(session, owner)
    return Redemption(transaction_id, earlier.credits, remaining, already_processed=True)


async def handle_notification(
    session: AsyncSession,
    verifier: AppStoreVerifier,
    notification: ResponseBodyV2DecodedPayload,
    products: ProductList,
) -> str:
    """Apply one App Store Server Notification V2 once; return what was done."""
    _check_shape(notification)
    delivery_id = notification.notificationUUID or ""
    kind = notification.rawNotificationType or "UNKNOWN"
    recorded = await record_delivery(session, SOURCE, delivery_id, kind, _summary(notification))
    if recorded is None:
        return "duplicate"

    outcome = "ignored"
    signed = notification.data.signedTransactionInfo if notification.data else None
    if notification.notificationType in (NotificationTypeV2.REFUND, NotificationTypeV2.REVOKE):
        if signed:
            transaction = await verifier.transaction(signed)
            outcome = await _take_back(session, transaction, delivery_id, products)
    elif notification.notificationType == NotificationTypeV2.REFUND_REVERSED:
        if signed:
            transaction = await verifier.transaction(signed)
            outcome = await _restore(session, transaction.transactionId or "", delivery_id)
    elif notification.notificationType == NotificationTypeV2.TEST:
        outcome = "test"
    await mark_processed(session, recorded)
    return outcome


def _check_shape(notification: ResponseBodyV2DecodedPayload) -> None:
    """Apple's fields are short text and a millisecond timestamp. Unsigned environments (dev)
    let anything through Apple's library, so refuse what Apple never sends — NUL characters
    (which PostgreSQL text cannot hold), odd lengths, a date that is not a number — before a
    row is written."""
    texts: tuple[object, ...] = (
        notification.notificationUUID,
        notification.rawNotificationType,
        notification.rawSubtype,
        notification.data.rawEnvironment if notification.data else None,
    )
    for value in texts:
        if value is not None and (
            not isinstance(value, str) or "\x00" in value or len(value) > 200
        ):
            raise Unverifiable("malformed notification")
    signed: object = notification.signedDate
    if signed is not None and (isinstance(signed, bool) or not isinstance(signed, int)):
        raise Unverifiable("malformed notification")


def _summary(notification: ResponseBodyV2DecodedPayload) -> dict[str, Any]:
    """What we keep of a notification: its identity, not the signed blobs."""
    data = notification.data
    return {
        "notification_type": notification.rawNotificationType,
        "subtype": notification.rawSubtype,
        "signed_date": notification.signedDate,
        "environment": data.rawEnvironment if data else None,
    }


async def _locked_purchase(session: AsyncSession, transaction_id: str) -> Purchase | None:
    """The purchase row, locked after its owner's row: users first, then purchases, the order
    redeem and merges use, so a refund racing either cannot deadlock. A merge that moves the
    purchase between the two reads is noticed and the owner looked up again."""
    purchase: Purchase | None = None
    for _ in range(3):
        owner = (
            await session.execute(
                select(Purchase.user_id).where(Purchase.transaction_id == transaction_id)
            )
        ).scalar_one_or_none()
        if owner is not None:
            await _lock_user(session, owner)
        purchase = (
            await session.execute(
                select(Purchase).where(Purchase.transaction_id == transaction_id).with_for_update(),
                execution_options={"populate_existing": True},
            )
        ).scalar_one_or_none()
        if purchase is None or purchase.user_id == owner:
            return purchase
    return purchase


async def _take_back(
    session: AsyncSession,
    transaction: JWSTransactionDecodedPayload,
    delivery_id: str,
    products: ProductList,
) -> str:
    transaction_id = transaction.transactionId or ""
    purchase = await _locked_purchase(session, transaction_id)
    if purchase is None:
        if await _tombstone(session, transaction, products):
            return "refunded before redemption"
        purchase = await _locked_purchase(session, transaction_id)  # redeemed just now
        if purchase is None:
            return "unknown transaction"
    if purchase.status == "refunded":
        return "already refunded"
    taken = 0
    if purchase.user_id is not None:
        available, _ = await ledger.balance(session, purchase.user_id)
        taken = min(purchase.credits, available)
    shortfall = purchase.credits - taken
    if taken > 0 and purchase.user_id is not None:
        await ledger.deduct(
            session,
            purchase.user_id,
            taken,
            reason=Reason.PURCHASE_REFUND,
            transaction_id=f"purchase_refund:{transaction_id}:{delivery_id}",
            details={"transaction_id": transaction_id, "shortfall": shortfall},
        )
    await _set_refund_state(session, transaction_id, "refunded", taken, shortfall)
    return f"refunded {taken}, shortfall {shortfall}"


async def _set_refund_state(
    session: AsyncSession, transaction_id: str, status: str, revoked: int, shortfall: int
) -> None:
    await session.execute(
        update(Purchase)
        .where(Purchase.transaction_id == transaction_id)
        .values(
            status=status,
            credits_revoked=revoked,
            refund_shortfall=shortfall,
            updated_at=datetime.now(UTC),
        )
    )


async def _tombstone(
    session: AsyncSession, transaction: JWSTransactionDecodedPayload, products: ProductList
) -> bool:
    """Record a refund that arrived before the purchase was redeemed, so that a later
    redemption of the same transaction is refused instead of credited. False if a redemption
    got there first (the caller then refunds it normally) or the product is not ours."""
    product = products.find(transaction.productId or "")
    if product is None or not transaction.transactionId:
        return False
    inserted = (
        await session.execute(
            _TOMBSTONE,
            {
                "tid": transaction.transactionId,
                "original": transaction.originalTransactionId,
                "product": product.product_id,
                "credits": product.credits * max(1, transaction.quantity or 1),
                "environment": transaction.rawEnvironment or "",
                "at": _purchase_date(transaction),
            },
        )
    ).scalar_one_or_none()
    return inserted is not None


async def _restore(session: AsyncSession, transaction_id: str, delivery_id: str) -> str:
    purchase = await _locked_purchase(session, transaction_id)
    if purchase is None:
        return "unknown transaction"
    if purchase.status != "refunded":
        return "not refunded"
    if purchase.user_id is None and purchase.credits_revoked == purchase.refund_shortfall == 0:
        # A tombstone (refunded before anyone redeemed it): the transaction is good again.
        await session.execute(delete(Purchase).where(Purchase.transaction_id == transaction_id))
        return "reversed before redemption"
    owner = purchase.user_id
    given_back = purchase.credits_revoked if owner is not None else 0
    if owner is not None and given_back > 0:
        await ledger.add(
            session,
            owner,
            given_back,
            reason=Reason.PURCHASE_RESTORED,
            transaction_id=f"purchase_restored:{transaction_id}:{delivery_id}",
            details={"transaction_id": transaction_id},
        )
    await _set_refund_state(session, transaction_id, "credited", 0, 0)
    return f"restored {given_back}"


async def reassign_owner(session: AsyncSession, from_user: uuid.UUID, to_user: uuid.UUID) -> None:
    """A merged guest's purchases follow its credits, so a later refund takes from the account
    the credits went to."""
    await session.execute(
        update(Purchase).where(Purchase.user_id == from_user).values(user_id=to_user)
    )


_STATS = text(
    "SELECT count(*) AS recorded, COALESCE(SUM(credits), 0) AS credits, "
    "count(*) FILTER (WHERE status = 'refunded') AS refunded "
    "FROM purchases WHERE created_at >= :since"
)


async def stats_since(session: AsyncSession, since: datetime) -> dict[str, int]:
    """App Store transactions recorded since `since` (refund notices for a transaction never
    redeemed included), the credits they carry, and how many are refunded."""
    row = (await session.execute(_STATS, {"since": since})).one()
    return {"count": int(row.recorded), "credits": int(row.credits), "refunded": int(row.refunded)}
