"""The composition root for HTTP: services, queue, middleware, error renderers, every router.

Adding a domain with endpoints is one `include_router` line here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from rendio.accounts.endpoints import router as accounts_router
from rendio.admin.endpoints import router as admin_router
from rendio.catalog.endpoints import router as catalog_router
from rendio.config import Settings
from rendio.credits.endpoints import router as credits_router
from rendio.credits.endpoints import webhooks as credits_webhooks
from rendio.generation.endpoints import router as generation_router
from rendio.history.endpoints import router as history_router
from rendio.identity import gotrue
from rendio.identity.auth_endpoints import router as auth_router
from rendio.identity.dependencies import require_apikey, require_auth_apikey
from rendio.identity.endpoints import router as identity_router
from rendio.platform.errors import HTTP_STATUS
from rendio.platform.http import Renderers, install_error_handlers
from rendio.platform.media import router as media_router
from rendio.platform.middleware import RequestMiddleware
from rendio.platform.ops import router as ops_router
from rendio.platform.opslog import OpsLog
from rendio.platform.queue import create_queue
from rendio.push.endpoints import router as push_router
from rendio.services import build_services
from rendio.tasks import registration
from rendio.webhooks.endpoints import router as provider_webhooks
from rendio.worker import COMPONENT as WORKER
from rendio.worker import run_worker as worker_loop

_ERROR_SCHEMA = {
    "description": "Error envelope",
    "content": {
        "application/json": {
            "example": {"error": {"code": "ERR_4013", "message": "…", "details": {}}}
        }
    },
}


def operation_id(route: APIRoute) -> str:
    """Stable OpenAPI operation ids (clients generated from the document keep their method
    names): the first method and the path's last segment, e.g. `post_generate_video`."""
    method = sorted(route.methods or {"GET"})[0].lower()
    name = route.path_format.rstrip("/").rsplit("/", 1)[-1].replace("-", "_")
    return f"{method}_{name}"


def create_app(settings: Settings, database_url: str, *, run_worker: bool = False) -> FastAPI:
    """Build the service for an already-migrated database at `database_url`."""
    services = build_services(settings, database_url, pool_size=settings.db_pool_size)
    ops_log = OpsLog()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        queue = create_queue(database_url, registration(settings))
        await queue.open_async()
        app.state.queue = queue
        ops_log_writer = asyncio.create_task(
            ops_log.run(services.sessions, settings.ops_log_interval)
        )
        worker = None
        if run_worker:
            worker = asyncio.create_task(worker_loop(queue, services))
            worker.add_done_callback(_report_worker_end)
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                # A worker that died has been reported to /ready already.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await worker
            ops_log_writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ops_log_writer
            await queue.close_async()
            await services.aclose()

    def _report_worker_end(task: asyncio.Task[None]) -> None:
        """/ready must not answer 200 for a process whose worker is gone."""
        if not task.cancelled() and task.exception() is not None:
            services.health.down(WORKER, f"stopped: {task.exception()!r}")

    app = FastAPI(
        title="Rendio",
        summary="Credit-metered AI video generation backend",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        responses={
            status: _ERROR_SCHEMA for status in sorted({str(s) for s in HTTP_STATUS.values()})
        },
    )
    app.state.services = services
    renderers = Renderers({gotrue.PREFIX: gotrue.render_problem}, observe=ops_log.observe)
    install_error_handlers(app, renderers)
    app.add_exception_handler(gotrue.AuthApiError, gotrue.on_auth_error)
    app.include_router(ops_router)
    functions_gate = [Depends(require_apikey)]
    app.include_router(catalog_router, dependencies=functions_gate)
    app.include_router(identity_router, dependencies=functions_gate)
    app.include_router(accounts_router, dependencies=functions_gate)
    app.include_router(credits_router, dependencies=functions_gate)
    app.include_router(credits_webhooks)
    app.include_router(provider_webhooks)
    app.include_router(generation_router, dependencies=functions_gate)
    app.include_router(history_router, dependencies=functions_gate)
    app.include_router(push_router, dependencies=functions_gate)
    app.include_router(admin_router, dependencies=functions_gate)
    app.include_router(media_router)
    app.include_router(auth_router, dependencies=[Depends(require_auth_apikey)])
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        renderers=renderers,
        limiter=services.limiter,
        trusted_proxies=settings.trusted_proxies,
    )
    return app
