"""The machine's Redis, when it has one (CI machines do; a laptop may not)."""

import socket

LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False
