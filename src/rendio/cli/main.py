"""The `rendio` command: run the service and operate it."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from rendio.cli.admin import admin_app
from rendio.cli.common import (
    DataDir,
    connection,
    console,
    database,
    errors,
    exit_on_sigterm,
    fail,
    settings_from,
)
from rendio.cli.docs import docs_app
from rendio.config import SettingsError

if TYPE_CHECKING:
    pass

app = typer.Typer(
    help=(
        "Rendio: a self-hostable backend for credit-metered AI video generation.\n\n"
        "With no configuration it runs on an embedded PostgreSQL kept in ./.rendio; set "
        "RENDIO_DATABASE_URL to use your own server."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Manage the model catalog.", no_args_is_help=True)
app.add_typer(models_app, name="models")
# The setting that makes each provider's models offered.
PROVIDER_KEYS = {
    "fal": "RENDIO_FAL_KEY",
    "openai": "RENDIO_OPENAI_API_KEY",
    "runway": "RENDIO_RUNWAY_API_KEY",
    "replicate": "RENDIO_REPLICATE_API_TOKEN",
}
credits_app = typer.Typer(help="Inspect the credit ledger.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")
app.add_typer(admin_app, name="admin")
app.add_typer(docs_app, name="docs")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000].")] = None,
    data_dir: DataDir = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run `rendio worker` apart.")
    ] = False,
) -> None:
    """Serve the HTTP API (and, unless --no-worker, the background worker in-process)."""
    from rendio.app import create_app
    from rendio.platform.logging import configure_logging
    from rendio.platform.server import serve as serve_http

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = settings_from(data_dir, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn re-raises SIGTERM after its graceful shutdown; this makes that a normal exit.
    exit_on_sigterm(0)
    url = database(settings)
    try:
        application = create_app(settings, url, run_worker=not no_worker)
    except SettingsError as error:
        fail(f"invalid settings: {error}")
    serve_http(application, settings)


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run a background worker (any number can run against one database)."""
    from rendio.platform.logging import configure_logging
    from rendio.platform.queue import create_queue
    from rendio.services import build_services
    from rendio.tasks import registration
    from rendio.worker import WorkerGaveUp, run_worker

    settings = settings_from(data_dir)
    configure_logging(settings.log_level, settings.log_format)
    exit_on_sigterm()
    url = database(settings)
    try:
        services = build_services(settings, url, pool_size=settings.worker_concurrency)
    except SettingsError as error:
        fail(f"invalid settings: {error}")
    queue = create_queue(url, registration(settings))

    async def run() -> None:
        main = asyncio.current_task()
        assert main is not None
        loop = asyncio.get_running_loop()
        for stop in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(stop, main.cancel)  # a graceful stop: running jobs finish
        try:
            async with queue.open_async():
                await run_worker(queue, services)
        finally:
            await services.aclose()

    try:
        asyncio.run(run())
    except asyncio.CancelledError:
        pass  # stopped by a signal, on purpose
    except WorkerGaveUp as error:
        fail(f"the worker gave up: {error}", code=1)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply database migrations and seed new default models, then exit."""
    exit_on_sigterm()
    settings = settings_from(data_dir)
    database(settings)
    console.print("database is up to date")


@models_app.command("import")
def models_import(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON catalog file.")],
    data_dir: DataDir = None,
) -> None:
    """Upsert models from FILE by slug. The whole file is validated first: all or nothing."""
    from rendio.catalog.importer import CatalogError, import_models, load_catalog

    exit_on_sigterm()
    settings = settings_from(data_dir)
    try:
        entries = load_catalog(file)
    except CatalogError as error:
        fail(str(error), code=1)
    with connection(settings, begin=True) as conn:
        inserted, updated = import_models(conn, entries)
    console.print(f"imported {len(entries)} models: {inserted} new, {updated} updated")


@models_app.command("list")
def models_list(data_dir: DataDir = None) -> None:
    """List every model in the catalog and whether clients are offered it."""
    from sqlalchemy import select

    from rendio.catalog.models import VideoModel
    from rendio.providers.registry import offered_providers

    exit_on_sigterm()
    settings = settings_from(data_dir)
    with connection(settings) as conn:
        order = (VideoModel.is_featured.desc(), VideoModel.name)
        rows = conn.execute(select(VideoModel).order_by(*order)).all()
    runnable = set(offered_providers(settings))
    table = Table("slug", "name", "provider", "credits", "enabled", "offered")
    for row in rows:
        per_second = row.cost_per_second
        cost = (
            ", ".join(f"{credits}/s at {resolution}" for resolution, credits in per_second.items())
            if per_second
            else str(row.cost_per_generation)
        )
        table.add_row(
            row.slug,
            row.name,
            row.provider,
            cost,
            "yes" if row.is_available else "no",
            _offered(row.is_available, row.provider, runnable),
        )
    console.print(table)


def _offered(enabled: bool, provider: str, runnable: set[str]) -> str:
    """Whether clients are offered a model, and if not, what to change."""
    if not enabled:
        return "no (switched off)"
    if provider in runnable:
        return "yes"
    setting = PROVIDER_KEYS.get(provider, "its key")
    return f"no ({setting} not set)"


@credits_app.command("verify")
def credits_verify(data_dir: DataDir = None) -> None:
    """Check every balance against its ledger; print offenders and exit 1 if there are any."""
    from rendio.ledger.audit import ledger_offences

    exit_on_sigterm()
    settings = settings_from(data_dir)
    with connection(settings) as conn:
        offences = ledger_offences(conn)
    for offence in offences:
        errors.print(f"user {offence.user_id}: {offence.problem}", highlight=False)
    if offences:
        fail(f"{len(offences)} ledger offence(s)", code=1)
    console.print("ledger is consistent: every balance equals its ledger")
