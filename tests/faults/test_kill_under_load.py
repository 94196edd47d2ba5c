"""kill -9 of the API and of workers at random moments under concurrent, retried
generate-video load (issue 10's fault suite). Whatever dies when, the money stays exact.

Bounded for the suite; `RENDIO_TEST_FAULT_SCALE=N` multiplies clients, requests and kills for
a longer run by hand (docs/faults.md has the last figures).
"""

import os
import random
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.factories import FAST_WORKER, video_body
from tests.helpers.outage import assert_money_is_exact
from tests.helpers.processes import free_port, rendio_command, service_env, wait_for_http

SCALE = int(os.environ.get("RENDIO_TEST_FAULT_SCALE", "1"))
CLIENTS = 4 * SCALE
REQUESTS_PER_CLIENT = 6 * SCALE
KILLS = 4 * SCALE


@dataclass
class Fleet:
    """`rendio serve --no-worker` and two `rendio worker`s on one database and data dir."""

    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> None:
        args = ["serve", "--no-worker", "--port", str(self.port)] if name == "api" else ["worker"]
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [*rendio_command(), *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        if name == "api":
            wait_for_http(f"{self.base_url}/health", self.processes[name])

    def kill(self, name: str) -> None:
        self.processes[name].send_signal(signal.SIGKILL)
        self.processes[name].wait()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def client_load(
    fleet: Fleet, number: int, acknowledged: dict[str, str], errors: list[BaseException]
) -> None:
    try:
        _client_load(fleet, number, acknowledged)
    except BaseException as error:  # a thread's failure must fail the test
        errors.append(error)


def _client_load(fleet: Fleet, number: int, acknowledged: dict[str, str]) -> None:
    """One app: onboard, then ask for videos, retrying each request (same key) until answered."""
    with httpx.Client(base_url=fleet.base_url, timeout=15) as http:
        headers: dict[str, str] = {}
        while not headers:
            try:
                answer = http.post(
                    "/functions/v1/device-check",
                    json={"device_id": f"chaos-{number}", "device_token": f"chaos-phone-{number}"},
                )
                if answer.status_code == 200:
                    token = answer.json()["session"]["access_token"]
                    headers = {"Authorization": f"Bearer {token}"}
            except httpx.TransportError:
                time.sleep(0.2)
        for request in range(REQUESTS_PER_CLIENT):
            key = f"chaos-{number}-{request}-{uuid.uuid4().hex[:6]}"
            while True:
                try:
                    answer = http.post(
                        "/functions/v1/generate-video",
                        json=video_body(duration=2),
                        headers={**headers, "Idempotency-Key": key},
                    )
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                if answer.status_code == 200:
                    acknowledged[key] = answer.json()["job_id"]
                    break
                assert answer.status_code in (409, 500, 502, 503), answer.text
                time.sleep(0.2)


def test_kill_9_at_random_moments_keeps_the_money_exact(
    clean_database: str, tmp_path: Path
) -> None:
    fast = {f"RENDIO_{name.upper()}": str(value) for name, value in FAST_WORKER.items()}
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_STARTER_CREDITS="1000",
        **fast,
    )
    fleet = Fleet(env, tmp_path)
    for name in ("api", "worker-1", "worker-2"):
        fleet.start(name)
    acknowledged: dict[str, str] = {}
    errors: list[BaseException] = []
    chaos = random.Random(20261122)
    try:
        clients = [
            threading.Thread(target=client_load, args=(fleet, number, acknowledged, errors))
            for number in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        for _ in range(KILLS):
            time.sleep(chaos.uniform(0.5, 3.0))
            victim = chaos.choice(["api", "worker-1", "worker-2"])
            fleet.kill(victim)
            time.sleep(chaos.uniform(0.0, 1.0))
            fleet.start(victim)
        for thread in clients:
            thread.join(300)
            assert not thread.is_alive(), "a client never got its answers"
        assert errors == []
        assert len(acknowledged) == CLIENTS * REQUESTS_PER_CLIENT
        wait_until_all_ended(fleet.base_url, clean_database, timeout=180)
    finally:
        fleet.stop()
    assert_money_is_exact(clean_database, acknowledged)


def wait_until_all_ended(base_url: str, database_url: str, timeout: float) -> None:
    from sqlalchemy import text

    from rendio.platform.db import sync_engine

    engine = sync_engine(database_url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                open_jobs = conn.execute(
                    text(
                        "SELECT count(*) FROM video_jobs WHERE status IN ('pending', 'processing')"
                    )
                ).scalar_one()
            if open_jobs == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"{open_jobs} jobs still open after {timeout}s")
    finally:
        engine.dispose()
