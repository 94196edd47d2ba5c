"""Real `rendio` processes for end-to-end tests: ports, environments, start and stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.helpers.factories import FAST_WORKER
from tests.helpers.settings import GENEROUS_LIMITS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rendio_command() -> list[str]:
    return [sys.executable, "-m", "rendio"]


def service_env(**variables: str) -> dict[str, str]:
    """The environment for a child `rendio` process: ours minus RENDIO_* settings, generous
    rate limits (see GENEROUS_LIMITS), plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENDIO_")}
    env.update({f"RENDIO_{name.upper()}": rule for name, rule in GENEROUS_LIMITS.items()})
    env.update(variables)
    return env


def run_cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`rendio ARGS…` on the database at `url`, as an operator would run it."""
    return subprocess.run(
        [*rendio_command(), *args],
        env=service_env(RENDIO_DATABASE_URL=url, **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def credits_verify(database_url: str) -> subprocess.CompletedProcess[str]:
    """`rendio credits verify` on a database, as an operator would run it."""
    return subprocess.run(
        [*rendio_command(), "credits", "verify"],
        env=service_env(RENDIO_DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Poll `url` until it answers 200; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"server exited early with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout}s")


class LiveServer:
    def __init__(self, process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def stop(self) -> int:
        return stop_process(self.process)


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, 20 s for a graceful exit, then SIGKILL; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def start_server(
    args: list[str], env: dict[str, str], log: Path, port: int | None = None
) -> LiveServer:
    port = port or free_port()
    handle = log.open("wb")
    process = subprocess.Popen(
        [*rendio_command(), "serve", "--port", str(port), *args],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base_url}/health", process)
    return LiveServer(process, base_url, log)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*rendio_command(), "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def fast_env(database_url: str, data_dir: Path, **variables: str) -> dict[str, str]:
    """A service environment whose worker reacts in tenths of a second (`variables` win)."""
    fast = {f"RENDIO_{name.upper()}": str(value) for name, value in FAST_WORKER.items()}
    return service_env(
        RENDIO_DATABASE_URL=database_url,
        RENDIO_DATA_DIR=str(data_dir),
        **(fast | variables),
    )
