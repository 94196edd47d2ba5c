"""The application factory: settings, database, queue, middleware, error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import Depends, FastAPI

from rendio.catalog.endpoints import router as catalog_router
from rendio.config import Settings, SettingsError
from rendio.credits.appstore import build_appstore_verifier
from rendio.credits.endpoints import router as credits_router
from rendio.credits.endpoints import webhooks as credits_webhooks
from rendio.credits.products import ProductsError, load_products
from rendio.generation.endpoints import router as generation_router
from rendio.identity.apple_signin import AppleIdTokenVerifier
from rendio.identity.auth_endpoints import router as auth_router
from rendio.identity.dependencies import require_apikey, require_auth_apikey
from rendio.identity.devicecheck import build_device_verifier
from rendio.identity.endpoints import router as identity_router
from rendio.identity.sessions import Keys
from rendio.platform.db import create_engine, session_factory
from rendio.platform.errors import HTTP_STATUS
from rendio.platform.http import RequestMiddleware, install_error_handlers
from rendio.platform.ops import router as ops_router
from rendio.platform.queue import create_queue
from rendio.platform.storage import router as media_router
from rendio.providers.registry import offered_providers
from rendio.worker import build_runtime, media_storage
from rendio.worker import run_worker as worker_loop

log = structlog.get_logger("rendio.app")

_ERROR_SCHEMA = {
    "description": "Error envelope",
    "content": {
        "application/json": {
            "example": {"error": {"code": "ERR_4013", "message": "…", "details": {}}}
        }
    },
}


def create_app(settings: Settings, database_url: str, *, run_worker: bool = False) -> FastAPI:
    """Build the service for an already-migrated database at `database_url`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(database_url, pool_size=settings.db_pool_size)
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        queue = create_queue(database_url, sweep_every=settings.sweep_every)
        await queue.open_async()
        app.state.queue = queue
        app.state.device_verifier = build_device_verifier(settings)
        worker = None
        if run_worker:
            runtime = build_runtime(settings, app.state.sessions)
            worker = asyncio.create_task(worker_loop(queue, runtime, install_signal_handlers=False))
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await app.state.device_verifier.aclose()
            await queue.close_async()
            await engine.dispose()

    app = FastAPI(
        title="Rendio",
        summary="Credit-metered AI video generation backend",
        version="0.1.0",
        lifespan=lifespan,
        responses={
            status: _ERROR_SCHEMA for status in sorted({str(s) for s in HTTP_STATUS.values()})
        },
    )
    app.state.settings = settings
    app.state.keys = Keys(
        secret=settings.resolved_jwt_secret(),
        access_token_lifetime=settings.access_token_lifetime,
        refresh_reuse_interval=settings.refresh_reuse_interval,
    )
    app.state.apple_id_verifier = AppleIdTokenVerifier(
        settings.apple_client_ids, settings.apple_jwks_url
    )
    try:
        app.state.products = load_products(settings.products_file)
    except ProductsError as error:
        raise SettingsError(f"RENDIO_PRODUCTS_FILE: {error}") from None
    app.state.appstore = build_appstore_verifier(settings)
    app.state.storage = media_storage(settings)
    app.state.offered_providers = set(offered_providers(settings))
    install_error_handlers(app)
    app.include_router(ops_router)
    functions_gate = [Depends(require_apikey)]
    app.include_router(catalog_router, dependencies=functions_gate)
    app.include_router(identity_router, dependencies=functions_gate)
    app.include_router(credits_router, dependencies=functions_gate)
    app.include_router(credits_webhooks)
    app.include_router(generation_router, dependencies=functions_gate)
    app.include_router(media_router)
    app.include_router(auth_router, dependencies=[Depends(require_auth_apikey)])
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes)
    return app
