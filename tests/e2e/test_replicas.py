"""Several replicas against one PostgreSQL: two `rendio serve --no-worker` processes and two
`rendio worker` processes, each with a data directory of its own (as on separate hosts), sharing
the database, an S3 bucket and the signing secret. Jobs created on either API are finished by
both workers, either API hands out working links to the media, an admin's ban on one API
refuses the user on the other at once, and — with Redis — a rate limit counts requests made on
both APIs.

CI runs this file on the embedded PostgreSQL and again on the machine's system PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rendio.platform.db import sync_engine
from tests.helpers.factories import LOCAL_ID
from tests.helpers.live import start_job, wait_until
from tests.helpers.processes import (
    LiveServer,
    fast_env,
    run_cli,
    start_server,
    start_worker,
    stop_process,
)
from tests.helpers.redis import LOCAL_REDIS, redis_reachable
from tests.helpers.s3 import FakeS3

JOBS = 6


def sign_in(http: httpx.Client, device: str) -> tuple[str, dict[str, str]]:
    answer = http.post(
        "/functions/v1/device-check", json={"device_id": device, "device_token": f"t-{device}"}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return str(body["user_id"]), {"Authorization": f"Bearer {body['session']['access_token']}"}


def own_host(env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    return {**env, "RENDIO_DATA_DIR": str(tmp_path / f"host-{name}")}


def apis(stack: ExitStack, env: dict[str, str], tmp_path: Path) -> list[httpx.Client]:
    clients = []
    for name in ("a", "b"):
        host = own_host(env, tmp_path, f"api-{name}")
        server: LiveServer = start_server(["--no-worker"], host, tmp_path / f"api-{name}.log")
        stack.callback(server.stop)
        clients.append(stack.enter_context(httpx.Client(base_url=server.base_url, timeout=10)))
    return clients


def workers(stack: ExitStack, env: dict[str, str], tmp_path: Path) -> None:
    for name in ("1", "2"):
        host = own_host(env, tmp_path, f"worker-{name}")
        process = start_worker(host, tmp_path / f"worker-{name}.log")
        stack.callback(stop_process, process)


def workers_that_ran_jobs(database_url: str) -> int:
    """How many distinct registered workers ran a step of some job (while they are alive:
    procrastinate forgets a worker's id when it stops)."""
    engine = sync_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT count(DISTINCT worker_id) FROM procrastinate_jobs "
                "WHERE task_name = 'generation:advance_job' AND worker_id IS NOT NULL"
            )
        ).scalar_one()
    engine.dispose()
    return int(count)


@pytest.fixture
def shared_env(clean_database: str, tmp_path: Path, s3: FakeS3) -> Iterator[dict[str, str]]:
    """What the hosts share: the database, a bucket, the signing secret, and Redis when the
    machine has one."""
    variables = {
        f"RENDIO_{name.upper()}": str(value) for name, value in s3.settings(s3.new_bucket()).items()
    }
    variables |= {"RENDIO_WORKER_CONCURRENCY": "1", "RENDIO_JWT_SECRET": "r" * 40}
    if redis_reachable():
        variables["RENDIO_REDIS_URL"] = LOCAL_REDIS
    yield fast_env(clean_database, tmp_path / "unused", **variables)


def test_two_apis_and_two_workers_share_the_work(
    shared_env: dict[str, str], clean_database: str, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        a, b = apis(stack, shared_env, tmp_path)
        workers(stack, shared_env, tmp_path)
        _, headers = sign_in(a, "maker")
        jobs = [start_job(a if n % 2 else b, headers, LOCAL_ID, duration=2) for n in range(JOBS)]
        for n, job_id in enumerate(jobs):
            # Each job is watched through the API it was not created on.
            status = wait_until(b if n % 2 else a, headers, job_id, {"completed", "failed"})
            assert status["status"] == "completed", status
        assert workers_that_ran_jobs(clean_database) == 2

        # A video stored by a worker on one host is linked by both APIs, and the links work.
        links = [
            api.get(
                "/functions/v1/get-video-status", params={"job_id": jobs[0]}, headers=headers
            ).json()["video_url"]
            for api in (a, b)
        ]
        bodies = [httpx.get(link, timeout=10) for link in links]
        assert [r.status_code for r in bodies] == [200, 200]
        assert bodies[0].content == bodies[1].content and len(bodies[0].content) > 1000

        # An admin made with the CLI bans on API A; API B refuses the user at once.
        admin_id, admin_headers = sign_in(a, "operator")
        assert run_cli(clean_database, "admin", "grant", admin_id).returncode == 0
        victim_id, victim_headers = sign_in(b, "victim")
        assert b.get("/functions/v1/get-user-credits", headers=victim_headers).status_code == 200
        banned = a.post(
            "/functions/v1/admin-ban-user",
            json={"user_id": victim_id, "reason": "abuse"},
            headers=admin_headers,
        )
        assert banned.status_code == 200, banned.text
        refused = b.get("/functions/v1/get-user-credits", headers=victim_headers)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "ERR_4010"


@pytest.mark.skipif(
    not redis_reachable(), reason="no Redis on 127.0.0.1:6379: limits are per process without it"
)
def test_a_rate_limit_counts_requests_on_every_api(
    shared_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**shared_env, "RENDIO_RATE_LIMIT_GENERATE_VIDEO": "3/hour"}
    with ExitStack() as stack:
        a, b = apis(stack, env, tmp_path)
        _, headers = sign_in(a, f"limited-{uuid.uuid4()}")
        for http in (a, a, b):
            start_job(http, headers, LOCAL_ID, duration=2)
        for http in (b, a):
            refused = http.post(
                "/functions/v1/generate-video",
                json={
                    "model_id": LOCAL_ID,
                    "prompt": "one too many",
                    "settings": {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"},
                },
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert refused.status_code == 429, refused.text
            assert refused.headers["RateLimit"].startswith('"generate-video";r=0;')
            assert int(refused.headers["Retry-After"]) > 0
