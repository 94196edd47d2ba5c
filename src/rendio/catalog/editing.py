"""Changing a model from the admin tools: switch it on or off, feature it, set its price."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.models import VideoModel
from rendio.platform.errors import NotFound, ValidationFailed

# What the audit trail records of a model before and after a change.
SHOWN = ("id", "slug", "name", "provider", "cost_per_generation", "is_available", "is_featured")


def _shown(model: VideoModel) -> dict[str, Any]:
    return {name: getattr(model, name) for name in SHOWN}


async def update_model(
    session: AsyncSession, model: str, changes: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Apply `changes` (column → value) to the model with this id or slug, row-locked; return
    its (before, after). Every replica serves the change at once: the catalog is read from the
    database on each request."""
    try:
        condition = VideoModel.id == uuid.UUID(model)
    except ValueError:
        condition = VideoModel.slug == model
    found = (
        await session.scalars(
            select(VideoModel)
            .where(condition)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one_or_none()
    if found is None:
        raise NotFound({"model_id": model})
    before = _shown(found)
    if "cost_per_generation" in changes and found.cost_per_second is not None:
        problem = "this model is priced per second; change cost_per_second in its catalog file"
        raise ValidationFailed({"fields": [{"field": "price", "problem": problem}]})
    if changes:
        await session.execute(update(VideoModel).where(VideoModel.id == found.id).values(**changes))
    return before, before | changes
