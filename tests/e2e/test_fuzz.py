"""Schemathesis against a live server: every operation, fed inputs generated from our own
OpenAPI document (valid, boundary and malformed), never answers a 5xx."""

import subprocess
import sys
from pathlib import Path

import httpx

from tests.helpers.processes import LiveServer


def test_no_operation_answers_a_server_error(live_server: LiveServer, tmp_path: Path) -> None:
    session = httpx.post(
        f"{live_server.base_url}/functions/v1/device-check",
        json={"device_id": "fuzzer", "device_token": "fuzzer-phone"},
    ).json()["session"]
    schemathesis = Path(sys.executable).with_name("schemathesis")
    done = subprocess.run(
        [
            str(schemathesis), "run", f"{live_server.base_url}/openapi.json",
            "-H", f"Authorization: Bearer {session['access_token']}",
            "--checks", "not_a_server_error",
            "--max-examples", "25",
            "--seed", "20261121",
            # These two end the session the run authenticates with.
            "--exclude-path", "/functions/v1/delete-account",
            "--exclude-path", "/auth/v1/logout",
            "--report-dir", str(tmp_path / "report"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:]
    assert "passed" in done.stdout
