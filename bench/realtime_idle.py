"""Memory of idle realtime sockets: one `rendio serve` holding N joined, idle sockets.

    .venv/bin/python bench/realtime_idle.py [--sockets 500] [--database-url URL]

Starts `rendio serve --no-worker` on a fresh database (the embedded PostgreSQL unless a URL is
given), onboards one guest, opens N websockets (vsn 2.0.0), joins each to a channel on the
guest's `video_jobs`, and prints the server's resident memory before and after, per socket,
and how many sockets answered a heartbeat while held.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.database import create_database  # noqa: E402
from tests.helpers.processes import service_env, start_server  # noqa: E402
from tests.helpers.realtime import heartbeat_all, open_joined, rss_kib  # noqa: E402

from rendio.platform import embedded  # noqa: E402
from rendio.tables import prepare_database  # noqa: E402


async def measure(base_url: str, pid: int, count: int) -> None:
    async with httpx.AsyncClient(base_url=base_url) as http:
        answer = await http.post(
            "/functions/v1/device-check", json={"device_id": "bench", "device_token": "bench"}
        )
        token = answer.json()["session"]["access_token"]
    url = base_url.replace("http://", "ws://") + "/realtime/v1/websocket?vsn=2.0.0"
    async with AsyncExitStack() as stack:
        warm = await open_joined(url, token, 5, stack)  # the listener and its connection
        await heartbeat_all(warm)
        await asyncio.sleep(1)
        before = rss_kib(pid)
        sockets = await open_joined(url, token, count, stack)
        await asyncio.sleep(2)
        after = rss_kib(pid)
        answered = await heartbeat_all(sockets)
    print(f"sockets held: {count}, answered a heartbeat: {answered}")
    print(f"server RSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after")
    print(f"per socket: {(after - before) / count:.1f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        server_url = args.database_url or embedded.start(Path(work) / "pg")
        url = create_database(server_url, "rendio_bench_realtime")
        prepare_database(url)
        env = service_env(RENDIO_DATABASE_URL=url, RENDIO_DATA_DIR=f"{work}/data")
        server = start_server(["--no-worker"], env, Path(work) / "server.log")
        try:
            asyncio.run(measure(server.base_url, server.process.pid, args.sockets))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
