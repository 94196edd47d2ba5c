"""`/realtime/v1/websocket`: Supabase Realtime's socket, for `postgres_changes` of the caller's
own `video_jobs` and `users` rows.

The upgrade is refused (HTTP 403) without the project's `apikey` (query parameter, as the
clients send it, or header), with an unknown protocol version, or when the process already
holds `RENDIO_REALTIME_MAX_CONNECTIONS` sockets, or
`RENDIO_REALTIME_MAX_CONNECTIONS_PER_IP` from the caller's address (the client address as for
rate limits: `X-Forwarded-For` only from trusted proxies). Each join names its user by its
`access_token`; the session behind it is checked as for any request.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, WebSocket

from rendio.generation.links import MediaLinks
from rendio.identity.dependencies import TokenProblem, resolve_token
from rendio.platform.client_ip import client_ip
from rendio.platform.services import services_of
from rendio.realtime.frames import VERSIONS
from rendio.realtime.services import RealtimeServices
from rendio.realtime.socket import RealtimeSocket, TokenRefused
from rendio.rest.exposure import Exposed

router = APIRouter(prefix="/realtime/v1")
# What a refused token is called in Supabase Realtime's replies (else the check's own reason).
_REFUSALS = {"expired": "Token has expired", "undecodable": "Invalid token"}


@router.websocket("/websocket")
async def realtime_socket(websocket: WebSocket) -> None:
    services = services_of(websocket.app.state, RealtimeServices)
    settings = services.settings
    apikey = websocket.query_params.get("apikey") or websocket.headers.get("apikey") or ""
    vsn = websocket.query_params.get("vsn", "1.0.0")
    expected = settings.anon_key
    if expected is not None and not hmac.compare_digest(
        apikey.encode(), expected.get_secret_value().encode()
    ):
        await websocket.close(code=1008, reason="missing or wrong apikey")
        return
    if vsn not in VERSIONS:
        await websocket.close(code=1008, reason="unknown vsn")
        return
    hub = services.changes
    peer = websocket.client.host if websocket.client else None
    forwarded = ", ".join(websocket.headers.getlist("x-forwarded-for")) or None
    address = client_ip(peer, forwarded, settings.trusted_proxies)
    if (
        hub.sockets >= settings.realtime_max_connections
        or hub.sockets_from[address] >= settings.realtime_max_connections_per_ip
    ):
        await websocket.close(code=1013, reason="too many connections")
        return
    links = MediaLinks(websocket, services)

    async def identify(token: str | None) -> tuple[str | None, int | None]:
        if token is None or (apikey and hmac.compare_digest(token.encode(), apikey.encode())):
            return None, None
        try:
            caller = await resolve_token(services.reads, services.secret, token)
        except TokenProblem as problem:
            reason = _REFUSALS.get(problem.kind, problem.reason)
            raise TokenRefused(reason) from None
        return str(caller.user_id), caller.expires_at

    def present(exposed: Exposed, record: dict[str, Any]) -> dict[str, Any]:
        shown = {name: record.get(name) for name in exposed.columns}
        for name in exposed.presented:
            shown[name] = links(shown[name])
        return shown

    # Counted before the first await, so sockets opening at once cannot all pass the check.
    hub.sockets += 1
    hub.sockets_from[address] += 1
    try:
        await websocket.accept()
        socket = RealtimeSocket(
            websocket,
            vsn,
            hub,
            identify,
            present,
            max_channels=settings.realtime_max_channels,
            queue_size=settings.realtime_send_queue,
        )
        await socket.run()
    finally:
        hub.sockets -= 1
        hub.sockets_from[address] -= 1
        if hub.sockets_from[address] <= 0:
            del hub.sockets_from[address]
