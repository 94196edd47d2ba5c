"""One worker following 2,000 jobs in flight on the fake fal: how late it notices that a
provider finished, polling only and with webhooks.

    .venv/bin/python bench/provider_lag.py \
        --database-url postgresql://postgres@127.0.0.1:5432/postgres \
        [--jobs 2000] [--run 30 90] [--modes polling webhooks]

Per mode, on a fresh database: the fake fal (tests/fakes/fal.py) runs in this process and
finishes each request after a time drawn from `--run` seconds; `rendio serve --no-worker`
(which takes the webhooks) and one `rendio worker` (default settings: 4 tasks at once, polls
backing off from 1 s to 15 s) run as real processes. The jobs are inserted and queued
directly (not through generate-video: its cost is not what is measured here). Then it waits
until every job ended and prints:

* lag: our `completed_at` minus the moment the fake's request finished (p50, p99, max);
* the worker's and the API's CPU seconds over the run (from /proc);
* queue rows written per second (procrastinate job ids used, divided by the run time).

The aim (issue 11): p99 lag within the maximum poll interval + 2 s when polling, under 1 s
with webhooks.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from tests.fakes.fal import FakeFal, served_fal  # noqa: E402
from tests.helpers.database import create_database, drop_database  # noqa: E402
from tests.helpers.processes import (  # noqa: E402
    free_port,
    rendio_command,
    service_env,
    start_server,
    wait_for_http,
)

from rendio.catalog.schemas import model_id_for  # noqa: E402
from rendio.platform.db import sync_engine  # noqa: E402
from rendio.providers.local_render import RenderSpec, render_video  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402

KLING = str(model_id_for("fal-kling-2-1"))
_QUEUE = text(
    "SELECT procrastinate_defer_jobs_v1(ARRAY(SELECT ROW('default', 'generation:advance_job', "
    "0, 'video-job:' || job_id, NULL, jsonb_build_object('job_id', job_id::text), NULL)"
    "::procrastinate_job_to_defer_v1 FROM video_jobs))"
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def insert_jobs(url: str, count: int) -> None:
    engine = sync_engine(url)
    with engine.begin() as conn:
        user = conn.execute(text("INSERT INTO users (is_guest) VALUES (true) RETURNING id"))
        conn.execute(
            text(
                "INSERT INTO video_jobs (user_id, model_id, prompt, settings, provider, "
                "provider_model_id, credits_used, deadline_seconds, deadline_at) "
                "SELECT :u, :m, 'bench ' || n, "
                '\'{"duration": 5, "aspect_ratio": "9:16", "resolution": "720p"}\', '
                "'fal', 'fal-ai/kling-video/v2.1/standard/text-to-video', 0, 900, "
                "now() + interval '1 hour' FROM generate_series(1, :n) AS n"
            ),
            {"u": user.scalar_one(), "m": KLING, "n": count},
        )
        conn.execute(_QUEUE)
    # 2,000 tasks appear at once in an empty queue table: without fresh statistics the
    # planner takes it for empty and procrastinate's fetch scans every waiting task (130 ms a
    # fetch) until autovacuum's next analyze, a minute later. A queue that grows as requests
    # come is analyzed as it grows; this bench measures that steady state.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE procrastinate_jobs"))
        conn.execute(text("ANALYZE video_jobs"))
    engine.dispose()


def ended(url: str) -> tuple[int, int, int]:
    engine = sync_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE status = 'completed'), "
                "count(*) FILTER (WHERE status = 'failed'), "
                "(SELECT COALESCE(max(id), 0) FROM procrastinate_jobs) FROM video_jobs"
            )
        ).one()
    engine.dispose()
    return int(row[0]), int(row[1]), int(row[2])


def lags(url: str, fake: FakeFal) -> list[float]:
    engine = sync_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT provider_job_id, EXTRACT(EPOCH FROM completed_at) FROM video_jobs "
                "WHERE status = 'completed'"
            )
        ).all()
    engine.dispose()
    return [float(done) - fake.requests[request_id].completed_wall for request_id, done in rows]


def run_mode(
    args: argparse.Namespace, fake: FakeFal, webhooks: bool, workdir: Path
) -> dict[str, Any]:
    name = f"rendio_bench_lag_{uuid.uuid4().hex[:8]}"
    url = create_database(args.database_url, name)
    prepare_database(url)
    fake.requests.clear()
    fake.deliveries.clear()
    port = free_port()
    env = service_env(
        RENDIO_DATABASE_URL=url,
        RENDIO_DATA_DIR=str(workdir / name),
        RENDIO_LOG_LEVEL="warning",
        RENDIO_PROVIDER_MAX_IN_FLIGHT=str(args.jobs),
        **fake.env(),
        **({"RENDIO_PUBLIC_URL": f"http://127.0.0.1:{port}"} if webhooks else {}),
    )
    api = start_server(["--no-worker"], env, workdir / f"{name}-api.log", port=port)
    worker = subprocess.Popen(
        [*rendio_command(), "worker"],
        env=env,
        stdout=(workdir / f"{name}-worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"{api.base_url}/health", api.process)
        time.sleep(2)  # the worker connects
        cpu_before = cpu_seconds(worker.pid), cpu_seconds(api.process.pid)
        _, _, first_task = ended(url)
        started = time.monotonic()
        insert_jobs(url, args.jobs)
        while True:
            completed, failed, last_task = ended(url)
            if completed + failed >= args.jobs or time.monotonic() - started > args.timeout:
                break
            time.sleep(1)
        seconds = time.monotonic() - started
        cpu_after = cpu_seconds(worker.pid), cpu_seconds(api.process.pid)
        measured = sorted(lags(url, fake))
    finally:
        worker.terminate()
        worker.wait(30)
        api.stop()
        drop_database(args.database_url, name)
    return {
        "mode": "webhooks" if webhooks else "polling",
        "completed": completed,
        "failed": failed,
        "run seconds": round(seconds, 1),
        "lag p50": round(statistics.median(measured), 2),
        "lag p99": round(measured[int(len(measured) * 0.99) - 1], 2),
        "lag max": round(measured[-1], 2),
        "worker CPU s": round(cpu_after[0] - cpu_before[0], 1),
        "API CPU s": round(cpu_after[1] - cpu_before[1], 1),
        "queue rows/s": round((last_task - first_task) / seconds, 1),
        "webhooks 2xx": sum(1 for status in fake.deliveries if 200 <= status < 300),
        "webhook answers": dict(Counter(fake.deliveries)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--run", type=float, nargs=2, default=(30.0, 90.0))
    parser.add_argument("--modes", nargs="+", default=["polling", "webhooks"])
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="rendio-bench-"))
    video = workdir / "result.mp4"
    render_video(RenderSpec("bench", 1, 160, 96), video)
    results = []
    with served_fal() as fake:
        fake.video_bytes = video.read_bytes()
        fake.queue_seconds = 0.0
        fake.run_seconds_range = (args.run[0], args.run[1])
        for mode in args.modes:
            results.append(run_mode(args, fake, mode == "webhooks", workdir))
            print(results[-1], flush=True)
    keys = list(results[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for result in results:
        print("| " + " | ".join(str(result[key]) for key in keys) + " |")


if __name__ == "__main__":
    main()
