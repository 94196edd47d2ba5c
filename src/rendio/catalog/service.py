"""Reading the catalog: the models clients are offered, and one model's terms for a job."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.catalog.models import VideoModel
from rendio.catalog.schemas import ModelOut, ModelsOut, PriceOption, price
from rendio.platform.reads import Reads


def _prices(model: VideoModel) -> list[PriceOption]:
    settings = model.settings
    return [
        PriceOption(
            duration=duration,
            resolution=resolution,
            credits=price(model.cost_per_generation, model.cost_per_second, duration, resolution),
        )
        for resolution in settings["resolutions"]
        for duration in settings["durations"]
    ]


async def available_models(session: AsyncSession, offered: frozenset[str]) -> ModelsOut:
    """Models the operator switched on whose provider can run: featured first, by name."""
    rows = await session.scalars(
        select(VideoModel)
        .where(VideoModel.is_available, VideoModel.provider.in_(offered))
        .order_by(VideoModel.is_featured.desc(), VideoModel.name, VideoModel.slug)
    )
    return ModelsOut(
        models=[
            ModelOut.model_validate(
                {**_columns(row), "prices": _prices(row)}, from_attributes=False
            )
            for row in rows
        ]
    )


def _columns(model: VideoModel) -> dict[str, Any]:
    return {
        column: getattr(model, column) for column in ModelOut.model_fields if column != "prices"
    }


@dataclass(frozen=True)
class Offer:
    """What generating with one model costs and allows."""

    provider: str
    cost_per_generation: int
    cost_per_second: dict[str, int] | None
    settings: dict[str, Any]
    deadline_seconds: int

    def price(self, chosen: dict[str, Any]) -> int:
        """The credits a job with these (validated) settings costs."""
        return price(
            self.cost_per_generation,
            self.cost_per_second,
            int(chosen["duration"]),
            str(chosen["resolution"]),
        )


# A lean read (platform/reads.py): asyncpg placeholders.
_OFFER = (
    "SELECT provider, cost_per_generation, cost_per_second, settings, deadline_seconds, "
    "is_available FROM models WHERE id = $1"
)


async def offer(reads: Reads, model_id: uuid.UUID, offered: frozenset[str]) -> Offer | None:
    """The model's terms if clients are offered it (switched on, provider runnable), else None.

    A lean read, not a statement of the caller's transaction: it takes no lock, so inside the
    transaction it would see the same committed row, one round trip and ~0.1 ms dearer."""
    row = await reads.one(_OFFER, (model_id,))
    if row is None or not row["is_available"] or row["provider"] not in offered:
        return None
    return Offer(
        row["provider"],
        row["cost_per_generation"],
        row["cost_per_second"],
        row["settings"],
        row["deadline_seconds"],
    )


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
