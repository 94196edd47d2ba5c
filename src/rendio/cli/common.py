"""What every `rendio` command shares: settings, the database it works on, how it fails."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from rendio.config import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Connection

# Piped output (scripts, tests) is not wrapped at 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (embedded database, secrets, media)."),
]


def fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings_from(data_dir: Path | None, **overrides: object) -> Settings:
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        fail(f"invalid settings: {error}")


def exit_on_sigterm(code: int = 128 + signal.SIGTERM) -> None:
    """Turn SIGTERM into a normal exit so exit hooks run (the embedded server stops cleanly).

    A one-shot command stopped this way did not finish, and says so (143); for `serve`, SIGTERM
    is how it is asked to stop, so a clean stop is a success (0): supervisors, and `make run`,
    then report no error.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(code))


def database(settings: Settings, *, migrate: bool = True) -> str:
    """The database URL to use, starting the embedded server and migrating as needed."""
    from rendio.platform.embedded import EmbeddedPostgresError, start
    from rendio.tables import prepare_database

    if settings.database_url is not None:
        url = settings.database_url
    else:
        try:
            url = start(settings.data_dir)
        except EmbeddedPostgresError as error:
            fail(str(error))
    if migrate:
        try:
            prepare_database(url)
        except Exception as error:
            fail(f"could not prepare the database: {type(error).__name__}: {error}")
    return url


@contextlib.contextmanager
def connection(settings: Settings, *, begin: bool = False) -> Iterator[Connection]:
    """A connection to the (started, migrated) database for a one-shot command."""
    from rendio.platform.db import sync_engine

    engine = sync_engine(database(settings))
    try:
        with engine.begin() if begin else engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()
