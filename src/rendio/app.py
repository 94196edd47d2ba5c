"""The composition root for HTTP: services, queue, middleware, error renderers, every router.

Adding a domain with endpoints is one `include_router` line here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware

from rendio.accounts.endpoints import router as accounts_router
from rendio.admin.endpoints import router as admin_router
from rendio.catalog.endpoints import router as catalog_router
from rendio.config import Settings
from rendio.credits.endpoints import polled as polled_credits
from rendio.credits.endpoints import router as credits_router
from rendio.credits.endpoints import webhooks as credits_webhooks
from rendio.generation.endpoints import polled as polled_generation
from rendio.generation.endpoints import router as generation_router
from rendio.history.endpoints import router as history_router
from rendio.identity import gotrue
from rendio.identity.auth_endpoints import router as auth_router
from rendio.identity.dependencies import APIKEY_ERRORS, require_apikey, require_auth_apikey
from rendio.identity.endpoints import router as identity_router
from rendio.platform import openapi
from rendio.platform.http import Renderers, install_error_handlers
from rendio.platform.media import router as media_router
from rendio.platform.middleware import RequestMiddleware
from rendio.platform.ops import router as ops_router
from rendio.platform.opslog import OpsLog
from rendio.platform.queue import create_queue
from rendio.push.endpoints import router as push_router
from rendio.realtime.endpoints import router as realtime_router
from rendio.rest import problems as rest_problems
from rendio.rest.endpoints import require_rest_apikey
from rendio.rest.endpoints import router as rest_router
from rendio.services import build_services
from rendio.tasks import registration
from rendio.webhooks.endpoints import router as provider_webhooks
from rendio.worker import COMPONENT as WORKER
from rendio.worker import run_worker as worker_loop

# CORS (RENDIO_CORS_ORIGINS): what supabase-js sends, and the answers' headers it may read.
_CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_CORS_HEADERS = (
    "authorization",
    "apikey",
    "content-type",
    "x-client-info",
    "accept-profile",
    "content-profile",
    "prefer",
    "idempotency-key",
    "range",
    "x-supabase-api-version",
    "x-request-id",
)
_CORS_EXPOSED = (
    "content-range",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
    "x-supabase-api-version",
    "x-sb-error-code",
)


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
        services.notices.start()  # catalog changes and realtime rows, heard from any process
        await services.reads.open()
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
        # FastAPI's own OpenTelemetry hooks are off: the service's metrics are Prometheus'
        # (/metrics), and the hooks cost every request a provider check.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        title="Rendio",
        summary="Credit-metered AI video generation backend",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # Served by `openapi.serve_docs` from our own copies of the scripts, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    openapi.serve_docs(app)
    # Each route declares the errors its code raises; these add what is around the routes.
    openapi.describe(
        app,
        [
            *openapi.envelope_rules("/functions/v1/", *APIKEY_ERRORS),
            *openapi.envelope_rules("/webhooks/"),
            *gotrue.around(),
        ],
    )
    renderers = Renderers(
        {
            gotrue.PREFIX: gotrue.render_problem,
            rest_problems.PREFIX: rest_problems.render_problem,
        },
        observe=ops_log.observe,
    )
    install_error_handlers(app, renderers)
    app.add_exception_handler(gotrue.AuthApiError, gotrue.on_auth_error)
    app.add_exception_handler(rest_problems.RestProblem, rest_problems.on_rest_problem)
    # Routers are tried in this order for every request, so the calls apps make most come
    # first (paths never overlap, so the order changes nothing else; bench/README.md).
    functions_gate = [Depends(require_apikey)]
    app.include_router(polled_generation)  # these call the apikey gate themselves
    app.include_router(polled_credits)
    app.include_router(generation_router, dependencies=functions_gate)
    app.include_router(catalog_router)  # get-models calls the apikey gate itself
    app.include_router(credits_router, dependencies=functions_gate)
    app.include_router(identity_router, dependencies=functions_gate)
    app.include_router(history_router, dependencies=functions_gate)
    app.include_router(ops_router)
    app.include_router(accounts_router, dependencies=functions_gate)
    app.include_router(credits_webhooks)
    app.include_router(provider_webhooks)
    app.include_router(push_router, dependencies=functions_gate)
    app.include_router(admin_router, dependencies=functions_gate)
    app.include_router(media_router)
    app.include_router(rest_router, dependencies=[Depends(require_rest_apikey)])
    app.include_router(realtime_router)
    app.include_router(auth_router, dependencies=[Depends(require_auth_apikey)])
    app.add_middleware(
        RequestMiddleware,
        max_body_bytes=settings.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        renderers=renderers,
        limiter=services.limiter,
        trusted_proxies=settings.trusted_proxies,
    )
    if settings.cors_origins:
        # Added last, so outermost: a preflight is answered before the request middleware (no
        # apikey, no rate limit), and every other answer, refusals included, gets the headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=_CORS_METHODS,
            allow_headers=_CORS_HEADERS,
            expose_headers=_CORS_EXPOSED,
            max_age=600,
        )
    return app
