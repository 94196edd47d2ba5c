"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from rendio.platform import metrics
from rendio.platform.errors import DatabaseError, ErrorCode, Unavailable
from rendio.platform.openapi import errors
from rendio.platform.services import CoreServices, services_of

router = APIRouter(tags=["operations"])


_PING = text("SELECT 1")


# HEAD too: load balancers probe with it. (One route per method: each gets its own id.)
@router.get("/health")
@router.head("/health")
async def health() -> dict[str, str]:
    """Liveness: the process is up and serving."""
    return {"status": "ok"}


@router.get("/ready", responses=errors(ErrorCode.DATABASE_ERROR, ErrorCode.UNAVAILABLE))
@router.head("/ready", responses=errors(ErrorCode.DATABASE_ERROR, ErrorCode.UNAVAILABLE))
async def ready(request: Request) -> dict[str, str]:
    """Readiness: the database answers and no part of the process (its worker) is down."""
    services = services_of(request.app.state, CoreServices)
    try:
        async with services.engine.connect() as conn:
            await conn.execute(_PING)
    except Exception:
        raise DatabaseError({"check": "database"}) from None
    problems = services.health.problems()
    if problems:
        raise Unavailable({"check": "components", "down": problems})
    return {"status": "ready"}


@router.get("/metrics", include_in_schema=False)
async def prometheus() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
