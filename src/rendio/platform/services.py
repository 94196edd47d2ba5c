"""What every request and task is handed: one frozen object, built once per process.

Each domain declares the slice it needs as a frozen dataclass that extends `CoreServices`
(`IdentityServices`, `CreditsServices`, …). The composition root (`rendio/services.py`)
defines the one class that inherits them all, builds it once and hands the same object to the
HTTP app and to the worker. A domain reads it through `services_dependency(ItsSlice)`, which is
typed and checked, so no endpoint reads untyped `app.state` attributes and no lower layer ever
imports a higher one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from rendio.config import Settings
from rendio.platform.health import Health
from rendio.platform.notices import Notices
from rendio.platform.ratelimit import RateLimiter
from rendio.platform.reads import Reads
from rendio.platform.storage import Storage


@dataclass(frozen=True)
class CoreServices:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    # Signs the service's own tokens and media links.
    secret: str
    # The state of the process's long-running parts, for /ready.
    health: Health
    limiter: RateLimiter
    # The process's one LISTEN connection (started by the HTTP app; a worker never starts it).
    notices: Notices
    # Single-statement reads outside the request's transaction (opened by the HTTP app).
    reads: Reads


Slice = TypeVar("Slice", bound=CoreServices)


def services_of(holder: Any, kind: type[Slice]) -> Slice:
    """The process's services object (kept on an app's `state` or a worker's context),
    checked to provide `kind`."""
    services = holder.services if not isinstance(holder, dict) else holder.get("services")
    if not isinstance(services, kind):
        raise TypeError(f"the services object does not provide {kind.__name__}")
    return services


def services_dependency(kind: type[Slice]) -> Callable[[Request], Awaitable[Slice]]:
    """A FastAPI dependency returning the app's services as `kind` (async: no thread hop)."""

    async def dependency(request: Request) -> Slice:
        return services_of(request.app.state, kind)

    return dependency


CoreDeps = Annotated[CoreServices, Depends(services_dependency(CoreServices))]
