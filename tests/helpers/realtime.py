"""Many idle realtime sockets against a live server, and the server's memory while it holds
them (the suite's bounded check and `bench/realtime_idle.py` share this)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def open_joined(
    url: str, token: str, count: int, stack: AsyncExitStack
) -> list[ClientConnection]:
    """`count` sockets (vsn 2.0.0), each joined to a channel on the caller's `video_jobs`."""
    sockets: list[ClientConnection] = []
    for index in range(count):
        ws = await stack.enter_async_context(connect(url, max_queue=4))
        join = {
            "config": {
                "postgres_changes": [{"event": "*", "schema": "public", "table": "video_jobs"}]
            },
            "access_token": token,
        }
        await ws.send(json.dumps(["1", "1", f"realtime:idle-{index}", "phx_join", join]))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert reply[3] == "phx_reply" and reply[4]["status"] == "ok", reply
        await asyncio.wait_for(ws.recv(), 30)  # the system "Subscribed" message
        sockets.append(ws)
    return sockets


async def heartbeat_all(sockets: list[ClientConnection]) -> int:
    """Send every socket a heartbeat; the number that answered it."""
    for ws in sockets:
        await ws.send(json.dumps([None, "hb", "phoenix", "heartbeat", {}]))
    answered = 0
    for ws in sockets:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
        answered += reply[1] == "hb" and reply[4]["status"] == "ok"
    return answered
