"""Reading the catalog for clients."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.models import Model
from rendio.catalog.schemas import ModelOut, ModelsOut
from rendio.config import Settings
from rendio.providers.registry import offered_providers


async def available_models(session: AsyncSession, settings: Settings) -> ModelsOut:
    """Models the operator switched on whose provider can run: featured first, by name."""
    rows = await session.scalars(
        select(Model)
        .where(Model.is_available, Model.provider.in_(offered_providers(settings)))
        .order_by(Model.is_featured.desc(), Model.name, Model.slug)
    )
    return ModelsOut(models=[ModelOut.model_validate(row, from_attributes=True) for row in rows])


def strong_etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/"x" matches "x"."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    candidates = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return etag in candidates
