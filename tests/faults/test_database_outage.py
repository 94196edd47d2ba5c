"""A hard database stop and restart under the service (issue 10, defects 1 and 4): the first
request afterwards succeeds, and a worker outlives the outage and finishes every paid job."""

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rendio.app import create_app
from rendio.tables import prepare_database
from tests.helpers.clients import guest, open_client
from tests.helpers.database import create_database, drop_database
from tests.helpers.factories import FAST_WORKER, video_body
from tests.helpers.outage import Cluster, assert_money_is_exact
from tests.helpers.processes import LiveServer, rendio_command, service_env, start_server
from tests.helpers.settings import SettingsFactory

# The outages happen on a cluster of the tests' own, whatever server the suite runs on.
pytestmark = pytest.mark.embedded_only


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    return Cluster(tmp_path_factory.mktemp("outage"))


@pytest.fixture
def outage_url(cluster: Cluster) -> Iterator[str]:
    cluster.start()
    name = f"rendio_outage_{uuid.uuid4().hex[:8]}"
    url = create_database(cluster.url(), name)
    prepare_database(url)
    yield url
    cluster.start()
    drop_database(cluster.url(), name)


async def test_the_first_request_after_a_database_restart_succeeds(
    cluster: Cluster, outage_url: str, make_settings: SettingsFactory
) -> None:
    settings = make_settings(database_url=outage_url)
    async for client in open_client(create_app(settings, outage_url)):
        headers = (await guest(client)).headers
        assert (
            await client.get("/functions/v1/get-user-credits", headers=headers)
        ).status_code == 200
        cluster.stop()
        cluster.start()
        for path in ("/functions/v1/get-user-credits", "/functions/v1/get-models"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text


def test_a_worker_outlives_a_database_outage_and_finishes_every_job(
    cluster: Cluster, outage_url: str, tmp_path: Path
) -> None:
    fast = {f"RENDIO_{name.upper()}": str(value) for name, value in FAST_WORKER.items()}
    env = service_env(
        RENDIO_DATABASE_URL=outage_url, RENDIO_DATA_DIR=str(tmp_path / "data"), **fast
    )
    api: LiveServer = start_server(["--no-worker"], env, tmp_path / "api.log")
    worker_log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [*rendio_command(), "worker"], env=env, stdout=worker_log, stderr=subprocess.STDOUT
    )
    acknowledged: dict[str, str] = {}
    try:
        with httpx.Client(base_url=api.base_url, timeout=10) as http:
            headers = bearer_of(http)
            for number in range(8):
                key = f"outage-{number}"
                response = http.post(
                    "/functions/v1/generate-video",
                    json=video_body(duration=2),
                    headers={**headers, "Idempotency-Key": key},
                )
                assert response.status_code == 200, response.text
                acknowledged[key] = response.json()["job_id"]
            wait_until_working(http, headers, next(iter(acknowledged.values())))
            cluster.stop()
            time.sleep(10)
            assert worker.poll() is None, "the worker exited during the outage"
            cluster.start()
            deadline = time.monotonic() + 120
            statuses: dict[str, str] = {}
            while time.monotonic() < deadline:
                for job_id in acknowledged.values():
                    answer = http.get(
                        "/functions/v1/get-video-status",
                        params={"job_id": job_id},
                        headers=headers,
                    )
                    if answer.status_code == 200:
                        statuses[job_id] = answer.json()["status"]
                if len(statuses) == len(acknowledged) and set(statuses.values()) == {"completed"}:
                    break
                time.sleep(0.5)
            assert set(statuses.values()) == {"completed"}, statuses
        assert worker.poll() is None, "the worker stopped for good"
    finally:
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(30)
        api.stop()
    assert exit_code == 0
    assert_money_is_exact(outage_url, acknowledged)


def bearer_of(http: httpx.Client) -> dict[str, str]:
    answer = http.post(
        "/functions/v1/device-check",
        json={"device_id": f"outage-{os.getpid()}", "device_token": "outage-phone"},
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['session']['access_token']}"}


def wait_until_working(http: httpx.Client, headers: dict[str, str], job_id: str) -> None:
    """Until the worker has started (it took the first job): the outage hits it at work."""
    for _ in range(600):
        status = http.get(
            "/functions/v1/get-video-status", params={"job_id": job_id}, headers=headers
        ).json()["status"]
        if status != "pending":
            return
        time.sleep(0.1)
    raise AssertionError("the worker never started")
