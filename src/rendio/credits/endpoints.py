"""Credits endpoints: balance, products on sale, App Store purchases and their notifications."""

from __future__ import annotations

from fastapi import APIRouter, Request

from rendio.credits import purchases
from rendio.credits.appstore import Unverifiable
from rendio.credits.schemas import (
    AppStoreNotificationIn,
    CreditsOut,
    ProductsOut,
    UpdateCreditsIn,
    UpdateCreditsOut,
    WebhookOut,
)
from rendio.credits.services import CreditsDeps
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.platform.db import Session, after_commit
from rendio.platform.errors import ErrorCode, PurchaseInvalid
from rendio.platform.metrics import WEBHOOKS
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["credits"])
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.get("/get-user-credits", response_model=CreditsOut, responses=errors(*AUTH_ERRORS))
@router.post("/get-user-credits", response_model=CreditsOut, responses=errors(*AUTH_ERRORS))
async def get_user_credits(caller: CurrentUser) -> CreditsOut:
    return CreditsOut(
        credits_remaining=caller.user.credits_remaining,
        credits_total=caller.user.credits_total,
    )


@router.get("/get-products", response_model=ProductsOut)
@router.post("/get-products", response_model=ProductsOut)
async def get_products(services: CreditsDeps) -> ProductsOut:
    return ProductsOut(products=services.products.products)


@router.post(
    "/update-credits",
    response_model=UpdateCreditsOut,
    responses=errors(
        *AUTH_ERRORS,
        ErrorCode.VALIDATION_FAILED,
        ErrorCode.RATE_LIMITED,
        ErrorCode.PURCHASE_INVALID,
        ErrorCode.NOT_FOUND,
    ),
)
async def update_credits(
    request: Request,
    services: CreditsDeps,
    caller: CurrentUser,
    session: Session,
    body: UpdateCreditsIn,
) -> UpdateCreditsOut:
    """Credit a StoreKit 2 transaction (its JWS) once; a replay answers the first result."""
    await services.limiter.enforce(request, "update-credits", str(caller.user.id), consume=False)
    try:
        transaction = await services.appstore.transaction(body.signed_transaction)
    except Unverifiable as error:
        raise PurchaseInvalid({"reason": error.reason}) from None
    redemption = await purchases.redeem(session, caller.user.id, transaction, services.products)
    if not redemption.already_processed:
        await services.limiter.count(request, "update-credits", str(caller.user.id))
    return UpdateCreditsOut(
        transaction_id=redemption.transaction_id,
        credits_added=redemption.credits_added,
        credits_remaining=redemption.credits_remaining,
        already_processed=redemption.already_processed,
    )


@webhooks.post(
    "/app-store",
    response_model=WebhookOut,
    responses=errors(
        ErrorCode.VALIDATION_FAILED, ErrorCode.PURCHASE_INVALID, ErrorCode.DATABASE_ERROR
    ),
)
async def app_store_notification(
    services: CreditsDeps, session: Session, body: AppStoreNotificationIn
) -> WebhookOut:
    """App Store Server Notifications V2: refunds take credits back, reversals restore them."""
    verifier = services.appstore
    try:
        notification = await verifier.notification(body.signedPayload)
        outcome = await purchases.handle_notification(
            session, verifier, notification, services.products
        )
    except Unverifiable as error:
        WEBHOOKS.labels("app-store", "rejected").inc()
        raise PurchaseInvalid({"reason": error.reason}) from None
    after_commit(session, lambda: WEBHOOKS.labels("app-store", outcome).inc())
    return WebhookOut(outcome=outcome)
