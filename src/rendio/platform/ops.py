"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from rendio.platform import metrics
from rendio.platform.errors import DatabaseError
from rendio.platform.services import CoreServices, services_of

router = APIRouter(tags=["operations"])


_PING = text("SELECT 1")


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving."""
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> dict[str, str]:
    """Readiness: the database answers."""
    try:
        async with services_of(request.app.state, CoreServices).engine.connect() as conn:
            await conn.execute(_PING)
    except Exception:
        raise DatabaseError({"check": "database"}) from None
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
