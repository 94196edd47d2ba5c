"""Request and response shapes of the credits endpoints."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from rendio.credits.products import Product


class CreditsOut(BaseModel):
    credits_remaining: int
    credits_total: int


class ProductsOut(BaseModel):
    products: list[Product]


class UpdateCreditsIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    signed_transaction: str = Field(min_length=1, max_length=65_536)


class UpdateCreditsOut(BaseModel):
    transaction_id: str
    credits_added: int
    credits_remaining: int
    already_processed: bool


class AppStoreNotificationIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    signedPayload: str = Field(min_length=1, max_length=262_144)  # Apple's field name


class WebhookOut(BaseModel):
    outcome: str
