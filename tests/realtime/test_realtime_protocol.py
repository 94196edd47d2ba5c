"""The realtime socket over the wire, frame by frame, in both protocol versions: heartbeats,
joins and their replies, leaves, refusals, token updates and expiry, and the bounds (a slow
consumer dropped, a cap on sockets, a bad frame)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rendio.platform.db import sync_engine
from tests.helpers.processes import LiveServer, service_env, start_server
from tests.helpers.realtime import heartbeat_all, open_joined, rss_kib

ANON_KEY = "rendio-anon-key-for-realtime-tests"
SECRET = "realtime-protocol-tests-jwt-secret-0123456789abcdef"


def serve(database_url: str, tmp_path: Path, **variables: str) -> LiveServer:
    env = service_env(
        RENDIO_DATABASE_URL=database_url,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_ANON_KEY=ANON_KEY,
        RENDIO_JWT_SECRET=SECRET,
        **variables,
    )
    return start_server(["--no-worker"], env, tmp_path / f"server-{time.monotonic_ns()}.log")


@pytest.fixture
def server(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = serve(clean_database, tmp_path)
    yield live
    live.stop()


def socket_url(server: LiveServer, vsn: str | None = "2.0.0", apikey: str = ANON_KEY) -> str:
    url = server.base_url.replace("http://", "ws://") + f"/realtime/v1/websocket?apikey={apikey}"
    return url + (f"&vsn={vsn}" if vsn else "")


def guest(server: LiveServer, device: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.base_url}/functions/v1/device-check",
        json={"device_id": device, "device_token": f"phone-{device}"},
        headers={"apikey": ANON_KEY},
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@asynccontextmanager
async def connect_once_freed(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    """A socket taking the place another just closed: the server frees it as soon as that
    socket's handler ends, a moment after the client saw the close (at most 5 s here)."""
    for _ in range(100):
        try:
            ws = await connect(url, **options)
        except InvalidStatus:
            await asyncio.sleep(0.05)
            continue
        async with ws:
            yield ws
        return
    raise AssertionError("the closed socket's place was never freed")


class Peer:
    """A raw Phoenix client speaking one protocol version."""

    def __init__(self, ws: ClientConnection, vsn: str) -> None:
        self.ws = ws
        self.vsn = vsn
        self.ref = 0

    async def push(
        self, topic: str, event: str, payload: dict[str, Any], join_ref: str | None = None
    ) -> str:
        self.ref += 1
        ref = str(self.ref)
        if self.vsn == "2.0.0":
            frame: Any = [join_ref, ref, topic, event, payload]
        else:
            frame = {"topic": topic, "event": event, "payload": payload, "ref": ref}
            frame["join_ref"] = join_ref
        await self.ws.send(json.dumps(frame))
        return ref

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        raw = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if self.vsn == "2.0.0":
            join_ref, ref, topic, event, payload = raw
            return {
                "join_ref": join_ref,
                "ref": ref,
                "topic": topic,
                "event": event,
                "payload": payload,
            }
        assert set(raw) == {"topic", "event", "payload", "ref"}, raw
        return dict(raw)

    async def join(
        self, topic: str, bindings: list[dict[str, Any]], token: str | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "config": {
                "broadcast": {"ack": False, "self": False},
                "presence": {"key": "", "enabled": False},
                "postgres_changes": bindings,
                "private": False,
            }
        }
        if token:
            payload["access_token"] = token
        ref = await self.push(topic, "phx_join", payload, join_ref=str(self.ref + 1))
        answer = await self.receive()
        assert answer["event"] == "phx_reply" and answer["ref"] == ref, answer
        return answer


@pytest.mark.parametrize("vsn", ["1.0.0", "2.0.0", None])
async def test_heartbeat_join_system_and_leave(server: LiveServer, vsn: str | None) -> None:
    user = guest(server, "install-1")
    version = vsn or "1.0.0"  # realtime-py 2.30 sends no vsn: Phoenix's default
    async with connect(socket_url(server, vsn)) as ws:
        peer = Peer(ws, version)
        ref = await peer.push("phoenix", "heartbeat", {})
        beat = await peer.receive()
        assert beat["event"] == "phx_reply" and beat["ref"] == ref
        assert beat["payload"] == {"status": "ok", "response": {}}

        bindings = [
            {"event": "*", "schema": "public", "table": "video_jobs"},
            {"event": "UPDATE", "schema": "public", "table": "users", "filter": "tier=eq.free"},
        ]
        joined = await peer.join("realtime:room", bindings, user["session"]["access_token"])
        assert joined["payload"]["status"] == "ok"
        echoed = joined["payload"]["response"]["postgres_changes"]
        assert [{k: v for k, v in e.items() if k != "id"} for e in echoed] == bindings
        assert all(isinstance(e["id"], int) and e["id"] > 0 for e in echoed)
        system = await peer.receive()
        assert system["event"] == "system" and system["ref"] is None
        assert system["payload"]["status"] == "ok"
        assert system["payload"]["extension"] == "postgres_changes"
        assert system["payload"]["channel"] == "room"

        unmatched = await peer.push("realtime:elsewhere", "broadcast", {})
        answer = await peer.receive()
        assert answer["ref"] == unmatched
        assert answer["payload"] == {"status": "error", "response": {"reason": "unmatched topic"}}

        left = await peer.push("realtime:room", "phx_leave", {})
        assert (await peer.receive())["ref"] == left
        closed = await peer.receive()
        assert closed["event"] == "phx_close" and closed["payload"] == {}


async def test_a_join_without_bindings_still_says_postgres_changes(server: LiveServer) -> None:
    """supabase-swift becomes SUBSCRIBED only on a reply holding the key."""
    async with connect(socket_url(server)) as ws:
        peer = Peer(ws, "2.0.0")
        joined = await peer.join("realtime:quiet", [], None)
        assert joined["payload"] == {"status": "ok", "response": {"postgres_changes": []}}


@pytest.mark.parametrize(
    ("binding", "reason"),
    [
        ({"event": "*", "schema": "public", "table": "auth_sessions"}, "not streamed"),
        ({"event": "*", "schema": "private", "table": "users"}, "unknown schema"),
        ({"event": "TRUNCATE", "schema": "public", "table": "users"}, "unknown event"),
        ({"event": "*", "table": "users", "filter": "id=eq"}, "Error parsing `filter`"),
        ({"event": "*", "table": "users", "filter": "device_id=eq.x"}, "Error parsing"),
        ({"event": "*", "table": "video_jobs", "filter": "prompt=match.a+"}, "not supported"),
        ({"event": "*", "table": "video_jobs", "filter": "progress=gt.many"}, "Error parsing"),
        ({"event": "*", "table": "video_jobs", "filter": "progress=eq.NaN"}, "finite"),
        ({"event": "*", "table": "video_jobs", "filter": "prompt=eq.a\u0000b"}, "NUL"),
        ({"event": "*", "table": "video_jobs", "filter": "prompt=like." + "%a" * 200}, "256"),
        ({"event": "*", "table": "video_jobs", "filter": "status=eq." + "x" * 2000}, "1024"),
        ({"event": 5, "table": "users"}, "must be text"),
        ({"event": "*", "table": ["users"]}, "must be text"),
        ({"event": "*", "schema": {"a": 1}, "table": "users"}, "must be text"),
    ],
)
async def test_bad_bindings_are_refused(
    server: LiveServer, binding: dict[str, Any], reason: str
) -> None:
    user = guest(server, "install-1")
    async with connect(socket_url(server)) as ws:
        peer = Peer(ws, "2.0.0")
        refused = await peer.join("realtime:x", [binding], user["session"]["access_token"])
        assert refused["payload"]["status"] == "error"
        assert reason in refused["payload"]["response"]["reason"]
        ref = await peer.push("phoenix", "heartbeat", {})
        assert (await peer.receive())["ref"] == ref  # the socket itself stays up


async def test_topics_are_bounded_and_a_second_join_replaces_the_first(
    server: LiveServer,
) -> None:
    user = guest(server, "install-1")
    token = user["session"]["access_token"]
    binding = [{"event": "*", "table": "users"}]
    async with connect(socket_url(server)) as ws:
        peer = Peer(ws, "2.0.0")
        long = await peer.join("realtime:" + "t" * 300, binding, token)
        assert long["payload"]["status"] == "error"
        assert "256" in long["payload"]["response"]["reason"]

        first = await peer.join("realtime:room", binding, token)
        assert first["payload"]["status"] == "ok"
        await peer.push("phoenix", "heartbeat", {})  # the system message, then this reply
        while (await peer.receive())["topic"] != "phoenix":
            pass
        payload = {"config": {"postgres_changes": binding}, "access_token": token}
        ref = await peer.push("realtime:room", "phx_join", payload, join_ref="again")
        # As Phoenix: the first join is closed (by its join_ref), then the new one answered.
        closed = await peer.receive()
        assert closed["event"] == "phx_close" and closed["join_ref"] == first["join_ref"]
        second = await peer.receive()
        assert second["event"] == "phx_reply" and second["ref"] == ref
        assert second["payload"]["status"] == "ok" and second["join_ref"] == "again"


async def test_in_filters_pick_their_rows(server: LiveServer, clean_database: str) -> None:
    user = guest(server, "install-1")
    token = user["session"]["access_token"]
    async with connect(socket_url(server)) as ws:
        peer = Peer(ws, "2.0.0")
        wanted = [{"event": "UPDATE", "table": "users", "filter": "language=in.(tr,es)"}]
        other = [{"event": "UPDATE", "table": "users", "filter": "language=in.(de,fr)"}]
        assert (await peer.join("realtime:wanted", wanted, token))["payload"]["status"] == "ok"
        await peer.receive()  # system
        assert (await peer.join("realtime:other", other, token))["payload"]["status"] == "ok"
        await peer.receive()  # system
        engine = sync_engine(clean_database)
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE users SET language = 'tr' WHERE id = :id"), {"id": user["user_id"]}
            )
        engine.dispose()
        change = await peer.receive()
        assert change["event"] == "postgres_changes" and change["topic"] == "realtime:wanted"
        assert change["payload"]["data"]["record"]["language"] == "tr"
        # Had the other channel matched, its change would come before this heartbeat's reply.
        ref = await peer.push("phoenix", "heartbeat", {})
        assert (await peer.receive())["ref"] == ref


async def test_access_tokens_are_checked_updated_and_expire(server: LiveServer) -> None:
    user = guest(server, "install-1")
    token = user["session"]["access_token"]
    async with connect(socket_url(server)) as ws:
        peer = Peer(ws, "2.0.0")
        forged = await peer.join("realtime:a", [{"event": "*", "table": "users"}], "not.a.jwt")
        assert forged["payload"]["status"] == "error"

        binding = [{"event": "*", "table": "users"}]
        joined = await peer.join("realtime:a", binding, token)
        assert joined["payload"]["status"] == "ok"
        await peer.receive()  # system

        # A short-lived token of the same session: the channel ends when it runs out.
        claims = jwt.decode(token, options={"verify_signature": False})
        claims["exp"] = int(time.time()) + 2
        short = jwt.encode(claims, SECRET, algorithm="HS256")
        await peer.push("realtime:a", "access_token", {"access_token": short})
        notice = await peer.receive(timeout=10)
        assert notice["event"] == "system" and notice["payload"]["status"] == "error"
        assert "expired" in notice["payload"]["message"]
        assert (await peer.receive())["event"] == "phx_close"
        with pytest.raises(ConnectionClosed) as closed:
            await peer.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_a_bad_access_token_update_ends_the_channel(server: LiveServer) -> None:
    user = guest(server, "install-1")
    async with connect(socket_url(server, "1.0.0")) as ws:
        peer = Peer(ws, "1.0.0")
        await peer.join(
            "realtime:a", [{"event": "*", "table": "users"}], user["session"]["access_token"]
        )
        await peer.receive()  # system
        await peer.push("realtime:a", "access_token", {"access_token": "forged"})
        notice = await peer.receive()
        assert notice["event"] == "system" and notice["payload"]["status"] == "error"
        assert (await peer.receive())["event"] == "phx_close"


async def test_sockets_per_client_address_are_capped(clean_database: str, tmp_path: Path) -> None:
    """Behind a trusted proxy, each client address has its own cap; the process cap holds over
    all of them."""
    live = serve(
        clean_database,
        tmp_path,
        RENDIO_REALTIME_MAX_CONNECTIONS="2",
        RENDIO_REALTIME_MAX_CONNECTIONS_PER_IP="1",
        RENDIO_TRUSTED_PROXIES="127.0.0.1/32",
    )

    def from_address(address: str) -> Any:
        return connect(socket_url(live), additional_headers={"X-Forwarded-For": address})

    try:
        async with from_address("203.0.113.1"):
            with pytest.raises(InvalidStatus):
                async with from_address("203.0.113.1"):
                    pass
            async with from_address("203.0.113.2"):
                with pytest.raises(InvalidStatus):
                    async with from_address("203.0.113.3"):
                        pass
        freed = connect_once_freed(
            socket_url(live), additional_headers={"X-Forwarded-For": "203.0.113.1"}
        )
        async with freed as again:  # a closed socket frees its place
            peer = Peer(again, "2.0.0")
            ref = await peer.push("phoenix", "heartbeat", {})
            assert (await peer.receive())["ref"] == ref
    finally:
        live.stop()


async def test_refused_upgrades(clean_database: str, tmp_path: Path) -> None:
    live = serve(clean_database, tmp_path, RENDIO_REALTIME_MAX_CONNECTIONS="1")
    try:
        for url in (socket_url(live, apikey="wrong"), socket_url(live, vsn="9.9.9")):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url):
                    pass
            assert refused.value.response.status_code == 403
        async with connect(socket_url(live)) as first:
            await Peer(first, "2.0.0").push("phoenix", "heartbeat", {})
            with pytest.raises(InvalidStatus):
                async with connect(socket_url(live)):
                    pass
        async with connect_once_freed(socket_url(live)) as ws:
            await ws.send("this is not a phoenix frame")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        live.stop()


async def test_a_slow_consumer_is_dropped(clean_database: str, tmp_path: Path) -> None:
    live = serve(clean_database, tmp_path, RENDIO_REALTIME_SEND_QUEUE="2")
    try:
        user = guest(live, "install-1")
        async with connect(socket_url(live)) as ws:
            peer = Peer(ws, "2.0.0")
            await peer.join(
                "realtime:a", [{"event": "*", "table": "users"}], user["session"]["access_token"]
            )
            await peer.receive()  # system
            engine = sync_engine(clean_database)
            with engine.begin() as conn:  # a burst of changes, delivered together at commit
                for language in ["tr", "es"] * 25:
                    conn.execute(
                        text("UPDATE users SET language = :l WHERE id = :id"),
                        {"l": language, "id": user["user_id"]},
                    )
            engine.dispose()
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(60):
                    await peer.receive()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    finally:
        live.stop()


async def test_idle_sockets_are_held_in_bounded_memory(server: LiveServer) -> None:
    """The bounded version of bench/realtime_idle.py (500 sockets, figures in bench/README.md):
    100 joined idle sockets all answer heartbeats, and each costs the server well under the
    256 KiB the README promises."""
    token = guest(server, "install-1")["session"]["access_token"]
    url = socket_url(server)
    async with AsyncExitStack() as stack:
        warm = await open_joined(url, token, 5, stack)
        assert await heartbeat_all(warm) == 5
        before = rss_kib(server.process.pid)
        sockets = await open_joined(url, token, 100, stack)
        assert await heartbeat_all(sockets) == 100
        grown = rss_kib(server.process.pid) - before
    assert grown / 100 < 256, f"{grown / 100:.0f} KiB per socket"
