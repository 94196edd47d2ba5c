"""The client's address: the socket peer, unless the peer is a proxy we trust
(`RENDIO_TRUSTED_PROXIES`), in which case the right-most address in `X-Forwarded-For` that is
not itself a trusted proxy. Anything a client writes to the left of that is ignored, so a
client cannot choose the address its limits are counted against."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(address: str, proxies: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_ip(peer: str | None, forwarded_for: str | None, proxies: Sequence[Network]) -> str:
    address = peer or "unknown"
    if not forwarded_for or not _trusted(address, proxies):
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, proxies):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # garbage where an address should be: trust nothing of it
    return hops[0] if hops else address
