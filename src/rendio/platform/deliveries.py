"""Inbound webhook deliveries (`webhook_deliveries`): each recorded once by the sender's own
delivery id, so a redelivery — senders retry until they see a 2xx — is recognised and changes
nothing the second time."""

from __future__ import annotations

import json
import math
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

_RECORD = text(
    "INSERT INTO webhook_deliveries (source, delivery_id, event_type, payload) "
    "VALUES (:source, :delivery, :kind, CAST(:payload AS jsonb)) "
    "ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id"
)
_PROCESSED = text(
    "UPDATE webhook_deliveries SET status = 'processed', processed_at = now(), error = NULL "
    "WHERE id = :id"
)


def storable(value: Any) -> Any:
    """`value` as a jsonb can hold it: PostgreSQL refuses NUL in text, and NaN or Infinity
    are not JSON; a sender's payload may carry either."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


async def record_delivery(
    session: AsyncSession, source: str, delivery_id: str, kind: str, payload: dict[str, Any]
) -> int | None:
    """The new delivery's row id, or None if this delivery was recorded before."""
    recorded = await session.execute(
        _RECORD,
        {
            "source": source,
            "delivery": delivery_id,
            "kind": kind,
            "payload": json.dumps(storable(payload), default=str),
        },
    )
    found: int | None = recorded.scalar_one_or_none()
    return found


async def mark_processed(session: AsyncSession, delivery: int) -> None:
    await session.execute(_PROCESSED, {"id": delivery})
