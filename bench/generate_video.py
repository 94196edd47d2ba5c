"""Load generator for POST /functions/v1/generate-video, beside pgbench running the same SQL.

    .venv/bin/python bench/generate_video.py [--database-url URL] [--seconds 10]
        [--concurrency 1 4 16 32]

It creates a fresh database on the given server, starts `rendio serve --no-worker` on it (no
worker, so no provider ever runs: only the API and the database are measured), onboards one
guest per client through device-check and tops each up through the ledger, then at each
concurrency level:
* drives generate-video with fresh Idempotency-Keys for `--seconds` and reports requests per
  second and latency percentiles;
* runs pgbench for as long with the same number of clients over a script holding the same
  statements one request makes (session check, model lookup, and the one statement of
  idempotency claim, guarded debit with its ledger row, job insert, queue insert, key store).
The figure is the ratio API rps / pgbench tps, both measured in the same run on the same
machine, since absolute numbers on a shared 2-core machine mean little.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import jwt
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.database import create_database, drop_database  # noqa: E402
from tests.helpers.processes import free_port  # noqa: E402

from rendio.catalog.schemas import model_id_for  # noqa: E402
from rendio.platform.db import libpq_url  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402

MODEL_ID = str(model_id_for("rendio-local"))
BODY = {
    "model_id": MODEL_ID,
    "prompt": "a paper boat on a river at dawn",
    "settings": {"duration": 2, "aspect_ratio": "16:9", "resolution": "360p"},
}
TOP_UP = 10_000_000

# The statements one generate-video request runs (see the endpoint and generation/service.py):
# the session check and the model's terms (lean reads), then its one statement — idempotency
# claim, guarded debit with its ledger row, job insert, queue insert, key store — which is its
# own transaction. :uid and :sid come from bench_clients; the job id is made in the statement
# (the endpoint makes it in Python), so that no extra round trip stands in for it.
PGBENCH_SCRIPT = f"""
\\set n random(1, :clients)
\\set k random(1, 9223372036854775806)
SELECT uid, sid FROM bench_clients WHERE n = :n \\gset
SELECT u.*, s.revoked_at FROM users u JOIN auth_sessions s ON s.user_id = u.id
  WHERE s.id = ':sid' AND u.id = ':uid';
SELECT provider, cost_per_generation, settings, deadline_seconds, is_available
  FROM models WHERE id = '{MODEL_ID}';
WITH ids AS (SELECT gen_random_uuid() AS job),
claimed AS (SELECT outcome, status_code, response_body
  FROM rendio_claim_idempotency_key(':uid', 'pgbench-' || ':k', 'f')),
moved AS (UPDATE users SET credits_remaining = credits_remaining - 1, updated_at = now()
  WHERE id = ':uid' AND credits_remaining - 1 >= 0 AND (SELECT outcome FROM claimed) = 'new'
  RETURNING id, credits_remaining),
logged AS (INSERT INTO quota_log (user_id, job_id, change, reason, transaction_id,
  balance_after, details) SELECT id, job, -1, 'generation', 'generation:' || job,
  credits_remaining, '{{}}' FROM moved, ids RETURNING balance_after),
made AS (INSERT INTO video_jobs (job_id, user_id, model_id, prompt, settings, image_url,
  provider, provider_model_id, credits_used, deadline_seconds, deadline_at)
  SELECT job, ':uid', '{MODEL_ID}', 'a paper boat', '{{"duration": 2}}', NULL, 'local',
  (SELECT provider_model_id FROM models WHERE id = '{MODEL_ID}'), 1, 300,
  now() + make_interval(secs => 300) FROM moved, ids),
queued AS (SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'generation:advance_job',
  0, 'video-job:' || job, NULL, jsonb_build_object('job_id', job), NULL
  )::procrastinate_job_to_defer_v1]) AS ids FROM moved, ids),
stored AS (INSERT INTO idempotency_log (user_id, idempotency_key, operation,
  request_fingerprint, status_code, response_body, job_id, expires_at)
  SELECT ':uid', 'pgbench-' || ':k', 'generate-video', 'f', 200,
  jsonb_build_object('credits_remaining', credits_remaining), job,
  now() + interval '24 hours' FROM moved, ids)
SELECT c.outcome, (SELECT balance_after FROM logged),
  (SELECT credits_remaining FROM users WHERE id = ':uid'), (SELECT count(*) FROM queued)
FROM claimed c;
"""


def start_server(database_url: str, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RENDIO_")}
    env.update(
        RENDIO_DATABASE_URL=database_url,
        RENDIO_DATA_DIR=str(data_dir),
        RENDIO_LOG_LEVEL="warning",
        RENDIO_DB_POOL_SIZE="20",
        # The benchmark asks one user for thousands of videos a minute: no limit in the way.
        RENDIO_RATE_LIMIT_GENERATE_VIDEO="100000000/minute",
        RENDIO_RATE_LIMIT_PER_IP="100000000/minute",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "rendio", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def top_up(database_url: str) -> None:
    """Enough credits that no guest runs out, through the ledger (one row per guest)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute(
            "WITH moved AS (UPDATE users SET credits_remaining = credits_remaining + %s, "
            "credits_total = credits_total + %s RETURNING id, credits_remaining) "
            "INSERT INTO quota_log (user_id, change, reason, transaction_id, balance_after) "
            "SELECT id, %s, 'admin_adjust', 'bench-top-up:' || id, credits_remaining FROM moved",
            [TOP_UP, TOP_UP, TOP_UP],
        )


def onboard(base_url: str, database_url: str, clients: int) -> list[dict[str, str]]:
    """One guest per client, each topped up through the ledger; their ids go to pgbench."""
    headers = []
    with httpx.Client(base_url=base_url, timeout=10) as http:
        for n in range(clients):
            session = http.post(
                "/functions/v1/device-check",
                json={"device_id": f"bench-{n}", "device_token": f"bench-phone-{n}"},
            ).json()["session"]
            headers.append({"Authorization": f"Bearer {session['access_token']}"})
    top_up(database_url)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_clients (n int PRIMARY KEY, uid uuid, sid uuid)")
        for n, header in enumerate(headers, start=1):
            claims = jwt.decode(
                header["Authorization"].split()[1], options={"verify_signature": False}
            )
            conn.execute(
                "INSERT INTO bench_clients VALUES (%s, %s, %s)",
                [n, claims["sub"], claims["session_id"]],
            )
    return headers


class Connection:
    """A bare keep-alive HTTP/1.1 connection: far less CPU per request than a full client, so
    on a small machine the load generator takes less of what the server needs."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n".encode()
            + body
        )
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


async def drive(
    port: int, headers: list[dict[str, str]], concurrency: int, seconds: float
) -> tuple[float, list[float], int]:
    """(requests per second, latencies in ms, non-200 answers)."""
    latencies: list[float] = []
    failures = 0
    body = json.dumps(BODY).encode()
    stop_at = time.perf_counter() + seconds

    async def client(who: dict[str, str]) -> None:
        nonlocal failures
        connection = await Connection.open(port)
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status = await connection.post(
                    "/functions/v1/generate-video",
                    body,
                    {**who, "Idempotency-Key": str(uuid.uuid4())},
                )
                latencies.append((time.perf_counter() - started) * 1000)
                failures += status != 200
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(client(headers[i]) for i in range(concurrency)))
    return len(latencies) / (time.perf_counter() - began), latencies, failures


def pgbench(database_url: str, clients: int, seconds: float, script: Path) -> float:
    url = libpq_url(database_url)
    done = subprocess.run(
        [
            "pgbench",
            "-n",
            "-f",
            str(script),
            "-c",
            str(clients),
            "-j",
            str(min(clients, 2)),
            "-T",
            str(int(seconds)),
            "-D",
            f"clients={clients}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"tps = ([\d.]+)", done.stdout)
    if found is None:
        raise SystemExit(done.stdout + done.stderr)
    return float(found.group(1))


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 32])
    args = parser.parse_args()

    name = f"rendio_bench_{os.getpid()}"
    url = create_database(args.database_url, name)
    prepare_database(url)
    work = Path(tempfile.mkdtemp())
    script = work / "generate_video.sql"
    script.write_text(PGBENCH_SCRIPT)
    port = free_port()
    server = start_server(url, work / "data", port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        headers = onboard(base_url, url, max(args.concurrency))
        asyncio.run(drive(port, headers, 4, 2))  # warm up pools and caches
        print("| clients | API rps | p50 ms | p99 ms | errors | pgbench tps | ratio |")
        print("|---|---|---|---|---|---|---|")
        for clients in args.concurrency:
            rps, latencies, failures = asyncio.run(drive(port, headers, clients, args.seconds))
            tps = pgbench(url, clients, args.seconds, script)
            print(
                f"| {clients} | {rps:.0f} | {percentile(latencies, 50):.1f} | "
                f"{percentile(latencies, 99):.1f} | {failures} | {tps:.0f} | {rps / tps:.2f} |",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(20)
        drop_database(args.database_url, name)


if __name__ == "__main__":
    main()
