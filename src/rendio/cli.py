"""The `rendio` command: run the service and operate it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from rendio.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

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
credits_app = typer.Typer(help="Inspect the credit ledger.", no_args_is_help=True)
app.add_typer(credits_app, name="credits")

# Piped output (scripts, tests) is not wrapped at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (embedded database, secrets, media)."),
]


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings(data_dir: Path | None, **overrides: object) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        _fail(f"invalid settings: {error}")


def _exit_on_sigterm(code: int = 128 + signal.SIGTERM) -> None:
    """Turn SIGTERM into a normal exit so exit hooks run (the embedded server stops cleanly).

    A one-shot command stopped this way did not finish, and says so (143); for `serve`, SIGTERM
    is how it is asked to stop, so a clean stop is a success (0): supervisors, and `make run`,
    then report no error.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(code))


def _database(settings: Settings, *, migrate: bool = True) -> str:
    """The database URL to use, starting the embedded server and migrating as needed."""
    from rendio.platform.embedded import EmbeddedPostgresError, start
    from rendio.tables import prepare_database

    if settings.database_url is not None:
        url = settings.database_url
    else:
        try:
            url = start(settings.data_dir)
        except EmbeddedPostgresError as error:
            _fail(str(error))
    if migrate:
        try:
            prepare_database(url)
        except Exception as error:
            _fail(f"could not prepare the database: {type(error).__name__}: {error}")
    return url


@contextlib.contextmanager
def _connection(settings: Settings, *, begin: bool = False) -> Iterator[Connection]:
    """A connection to the (started, migrated) database for a one-shot command."""
    from rendio.platform.db import sync_engine

    engine = sync_engine(_database(settings))
    try:
        with engine.begin() if begin else engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


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
    settings = _settings(data_dir, **overrides)
    configure_logging(settings.log_level, settings.log_format)
    # uvicorn re-raises SIGTERM after its graceful shutdown; this makes that a normal exit.
    _exit_on_sigterm(0)
    url = _database(settings)
    try:
        application = create_app(settings, url, run_worker=not no_worker)
    except SettingsError as error:
        _fail(f"invalid settings: {error}")
    serve_http(application, settings)


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run a background worker (any number can run against one database)."""
    from rendio.platform.logging import configure_logging
    from rendio.platform.queue import create_queue
    from rendio.services import build_services
    from rendio.tasks import registration
    from rendio.worker import WorkerGaveUp, run_worker

    settings = _settings(data_dir)
    configure_logging(settings.log_level, settings.log_format)
    _exit_on_sigterm()
    url = _database(settings)
    try:
        services = build_services(settings, url, pool_size=settings.worker_concurrency)
    except SettingsError as error:
        _fail(f"invalid settings: {error}")
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
        _fail(f"the worker gave up: {error}", code=1)


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply database migrations and seed new default models, then exit."""
    _exit_on_sigterm()
    settings = _settings(data_dir)
    _database(settings)
    console.print("database is up to date")


@models_app.command("import")
def models_import(
    file: Annotated[Path, typer.Argument(help="A YAML or JSON catalog file.")],
    data_dir: DataDir = None,
) -> None:
    """Upsert models from FILE by slug. The whole file is validated first: all or nothing."""
    from rendio.catalog.importer import CatalogError, import_models, load_catalog

    _exit_on_sigterm()
    settings = _settings(data_dir)
    try:
        entries = load_catalog(file)
    except CatalogError as error:
        _fail(str(error), code=1)
    with _connection(settings, begin=True) as conn:
        inserted, updated = import_models(conn, entries)
    console.print(f"imported {len(entries)} models: {inserted} new, {updated} updated")


@models_app.command("list")
def models_list(data_dir: DataDir = None) -> None:
    """List every model in the catalog and whether clients are offered it."""
    from sqlalchemy import select

    from rendio.catalog.models import VideoModel
    from rendio.providers.registry import offered_providers

    _exit_on_sigterm()
    settings = _settings(data_dir)
    with _connection(settings) as conn:
        order = (VideoModel.is_featured.desc(), VideoModel.name)
        rows = conn.execute(select(VideoModel).order_by(*order)).all()
    runnable = set(offered_providers(settings))
    table = Table("slug", "name", "provider", "cost", "enabled", "offered")
    for row in rows:
        table.add_row(
            row.slug,
            row.name,
            row.provider,
            str(row.cost_per_generation),
            "yes" if row.is_available else "no",
            _offered(row.is_available, row.provider, runnable, settings),
        )
    console.print(table)


def _offered(enabled: bool, provider: str, runnable: set[str], settings: Settings) -> str:
    if not enabled:
        return "no"
    if provider in runnable:
        return "yes"
    return (
        "no (no provider key)"
        if not settings.provider_configured(provider)
        else "no (no adapter yet)"
    )


@credits_app.command("verify")
def credits_verify(data_dir: DataDir = None) -> None:
    """Check every balance against its ledger; print offenders and exit 1 if there are any."""
    from rendio.ledger.audit import ledger_offences

    _exit_on_sigterm()
    settings = _settings(data_dir)
    with _connection(settings) as conn:
        offences = ledger_offences(conn)
    for offence in offences:
        errors.print(f"user {offence.user_id}: {offence.problem}", highlight=False)
    if offences:
        _fail(f"{len(offences)} ledger offence(s)", code=1)
    console.print("ledger is consistent: every balance equals its ledger")
