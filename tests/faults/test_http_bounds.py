"""What a stranger can make the server hold is bounded (issue 10, defect 3), tested with raw
sockets against the real `rendio serve` process."""

import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.processes import LiveServer, service_env, start_server

HEADER_TIMEOUT = 1.0
MAX_CONNECTIONS = 40


@pytest.fixture
def bounded_server(clean_database: str, tmp_path: Path) -> Iterator[LiveServer]:
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        RENDIO_BODY_TIMEOUT="1",
        RENDIO_KEEP_ALIVE_TIMEOUT="1",
        RENDIO_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        RENDIO_MAX_HEADER_BYTES="8192",
    )
    server = start_server(["--no-worker"], env, tmp_path / f"server-{uuid.uuid4().hex}.log")
    yield server
    server.stop()


def connect(server: LiveServer) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def envelope(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_oversized_headers_get_431_and_are_not_buffered(bounded_server: LiveServer) -> None:
    sock = connect(bounded_server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        for _ in range(64):  # up to 4 MB, as a stranger would
            sock.sendall(b"a" * 65536)
            sent += 65536
    except (BrokenPipeError, ConnectionResetError):
        pass
    status, body = envelope(read_all(sock))
    assert status == 431
    assert body["error"]["code"] == "ERR_4014"
    assert sent < 4 * 1024 * 1024, "the server read the whole header before refusing"


def test_slow_headers_and_silent_connections_are_cut(bounded_server: LiveServer) -> None:
    slow = connect(bounded_server)
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    silent = connect(bounded_server)
    started = time.monotonic()
    status, body = envelope(read_all(slow))
    assert status == 408
    assert body["error"]["code"] == "ERR_4015"
    assert read_all(silent) == b""  # closed without an answer: it asked nothing
    assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_a_stalled_body_gets_408(bounded_server: LiveServer) -> None:
    sock = connect(bounded_server)
    sock.sendall(
        b"POST /functions/v1/device-check HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"device_id"'
    )
    status, body = envelope(read_all(sock))
    assert status == 408
    assert body["error"]["code"] == "ERR_4015"


def test_connections_past_the_cap_get_503_and_normal_clients_are_served(
    bounded_server: LiveServer,
) -> None:
    held = [connect(bounded_server) for _ in range(MAX_CONNECTIONS - 5)]
    for sock in held:
        sock.sendall(b"GET /health HTTP/1.1\r\n")  # slowloris: headers never finish
    extra = [connect(bounded_server) for _ in range(10)]
    refused = 0
    for sock in extra:
        sock.settimeout(0.5)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
        if answer:
            status, body = envelope(answer)
            assert (status, body["error"]["code"]) == (503, "ERR_6004")
            refused += 1
    assert refused >= 5
    for sock in extra:
        sock.close()
    # The slow connections are cut after the header timeout; then a normal client is served.
    for sock in held:
        assert envelope(read_all(sock))[0] == 408
    response = httpx.get(f"{bounded_server.base_url}/health", timeout=5)
    assert response.status_code == 200


def test_normal_keep_alive_clients_are_unaffected(bounded_server: LiveServer) -> None:
    with httpx.Client(base_url=bounded_server.base_url, timeout=5) as http:
        for _ in range(20):
            assert http.get("/health").status_code == 200
        assert http.head("/health").status_code == 200
        assert http.head("/ready").status_code == 200
        posted = http.post(
            "/functions/v1/device-check",
            json={"device_id": "keep-alive-1", "device_token": "phone"},
        )
        assert posted.status_code == 200


def test_oversized_headers_in_one_read_on_a_kept_alive_connection_get_431(
    bounded_server: LiveServer,
) -> None:
    sock = connect(bounded_server)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200")
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    status, body = envelope(read_all(sock))
    assert status == 431
    assert body["error"]["code"] == "ERR_4014"
