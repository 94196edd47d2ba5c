"""Credits endpoints: balance, products on sale, App Store purchases and their notifications."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

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
from rendio.identity.dependencies import (
    AUTH_ERRORS,
    CALLER_SECURITY,
    CurrentUser,
    check_apikey,
    identify,
)
from rendio.platform.db import Session, after_commit
from rendio.platform.errors import ErrorCode, PurchaseInvalid
from rendio.platform.metrics import WEBHOOKS
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["credits"])
# Included without the router-level apikey gate: its endpoints call the gate themselves.
polled = APIRouter(prefix="/functions/v1", tags=["credits"])
webhooks = APIRouter(prefix="/webhooks", tags=["webhooks"])
_BALANCE_ROUTE: dict[str, Any] = {
    "response_model": CreditsOut,
    "responses": errors(*AUTH_ERRORS),
    "openapi_extra": {"security": CALLER_SECURITY},
}


@polled.get("/get-user-credits", **_BALANCE_ROUTE)
@polled.post("/get-user-credits", **_BALANCE_ROUTE)
async def get_user_credits(request: Request) -> Response:
    # Asked on every screen that shows the balance, and the caller check reads it anyway: it
    # asks FastAPI for nothing but the request (the apikey gate and the caller check are called
    # here, no database session is opened), measured in bench/README.md.
    check_apikey(request)
    answer = CreditsOut.model_validate((await identify(request)).row)
    return Response(answer.model_dump_json(), media_type="application/json")


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
    await services.limiter.enforce(request, "update-credits", str(caller.user_id), consume=False)
    try:
        transaction = await services.appstore.transaction(body.signed_transaction)
    except Unverifiable as error:
        raise PurchaseInvalid({"reason": error.reason}) from None
    redemption = await purchases.redeem(session, caller.user_id, transaction, services.products)
    if not redemption.already_processed:
        await services.limiter.count(request, "update-credits", str(caller.user_id))
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
