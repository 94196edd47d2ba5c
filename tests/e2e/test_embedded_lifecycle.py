"""The real `rendio` processes on the embedded PostgreSQL: start, share, stop, recover."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from rendio.platform.embedded import running_postmaster_pid
from tests.helpers.processes import LiveServer, rendio_command, service_env, start_server

embedded_only = pytest.mark.embedded_only


def embedded_env(data_dir: Path) -> dict[str, str]:
    return service_env(RENDIO_DATA_DIR=str(data_dir))


def wait_gone(pid: int, timeout: float = 20) -> bool:
    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


@embedded_only
def test_first_start_serves_models_logs_json_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log = tmp_path / "serve.log"
    server = start_server([], embedded_env(data_dir), log)
    response = httpx.get(f"{server.base_url}/functions/v1/get-models", timeout=5)
    assert response.status_code == 200
    assert [m["slug"] for m in response.json()["models"]] == ["rendio-local"]

    postmaster = running_postmaster_pid(data_dir)
    assert postmaster is not None
    server.stop()
    assert wait_gone(postmaster), "embedded postgres outlived the server"
    assert running_postmaster_pid(data_dir) is None

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("event") == "request"]
    models_line = next(
        entry for entry in request_lines if entry["route"] == "/functions/v1/get-models"
    )
    assert models_line["method"] == "GET"
    assert models_line["status"] == 200
    assert models_line["request_id"] == response.headers["x-request-id"]
    assert isinstance(models_line["duration_ms"], float)


@embedded_only
def test_processes_share_one_server_and_the_last_one_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = embedded_env(data_dir)
    server = start_server([], env, tmp_path / "serve.log")
    postmaster = running_postmaster_pid(data_dir)

    migrate = subprocess.run(
        [*rendio_command(), "migrate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    assert running_postmaster_pid(data_dir) == postmaster  # reused, and still running

    worker = subprocess.Popen([*rendio_command(), "worker"], env=env)
    time.sleep(3)
    assert worker.poll() is None
    server.stop()
    assert running_postmaster_pid(data_dir) == postmaster  # the worker still holds it

    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    assert wait_gone(postmaster)


@embedded_only
def test_a_killed_holder_does_not_keep_the_server_forever(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = embedded_env(data_dir)
    crashed = start_server(["--no-worker"], env, tmp_path / "crashed.log")
    crashed.process.kill()  # kill -9: no exit hooks run
    crashed.process.wait()
    postmaster = running_postmaster_pid(data_dir)
    assert postmaster is not None  # orphaned, as any kill -9 would leave it

    restarted = start_server(["--no-worker"], env, tmp_path / "restarted.log")
    assert running_postmaster_pid(data_dir) == postmaster  # adopted, not a second server
    restarted.stop()
    assert wait_gone(postmaster)


@embedded_only
@pytest.mark.parametrize("problem", ["file", "foreign"])
def test_unusable_data_dir_is_a_clear_error(tmp_path: Path, problem: str) -> None:
    data_dir = tmp_path / "data"
    if problem == "file":
        data_dir.write_text("not a directory")
        expected = "not a directory"
    else:
        (data_dir / "pg").mkdir(parents=True)
        (data_dir / "pg" / "something.txt").write_text("mine")
        expected = "not a PostgreSQL data directory"
    result = subprocess.run(
        [*rendio_command(), "migrate"],
        env=embedded_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_invalid_settings_stop_the_start_with_the_name(tmp_path: Path) -> None:
    env = embedded_env(tmp_path / "data") | {"RENDIO_PORTT": "1"}
    result = subprocess.run(
        [*rendio_command(), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "RENDIO_PORTT" in result.stderr


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [*rendio_command(), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0
    for command in ("serve", "worker", "migrate", "models"):
        assert command in result.stdout
    serve_help = subprocess.run(
        [*rendio_command(), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    for option in ("--host", "--port", "--data-dir", "--no-worker"):
        assert option in serve_help.stdout


def test_live_server_on_the_test_database(live_server: LiveServer) -> None:
    response = httpx.get(f"{live_server.base_url}/ready", timeout=5)
    assert response.json() == {"status": "ready"}


@embedded_only
def test_a_dead_embedded_server_is_restarted_and_then_stopped_by_its_last_holder(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    server = start_server(["--no-worker"], embedded_env(data_dir), tmp_path / "serve.log")
    first = running_postmaster_pid(data_dir)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_gone(first)
    deadline = time.monotonic() + 60
    ready = None
    while time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{server.base_url}/ready", timeout=2).status_code
        except httpx.HTTPError:
            ready = None
        if ready == 200:
            break
        time.sleep(0.5)
    assert ready == 200, "the server was not started again"
    restarted = running_postmaster_pid(data_dir)
    assert restarted is not None and restarted != first
    assert server.stop() == 0  # SIGTERM is a requested stop: a clean exit
    assert wait_gone(restarted), "the last holder left the restarted server running"
