"""supabase-js (pinned in tests/js/package-lock.json) against a live `rendio serve`: the app's
reads, single/maybeSingle, a count, a refused write and one realtime subscription hearing a
job's INSERT. Runs where Node.js and npm are on the machine; elsewhere it is skipped, saying
so, and the Python clients' tests still cover the wire."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.processes import service_env, start_server

JS = Path(__file__).resolve().parents[1] / "js"
ANON_KEY = "rendio-anon-key-for-supabase-js"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="Node.js and npm are not installed here: supabase-js is not run "
    "(the supabase-py tests still cover /rest/v1 and /realtime/v1)",
)


def installed() -> None:
    """`npm ci` from the lockfile, once per lockfile version."""
    stamp = JS / "node_modules" / ".installed-lock"
    lock = (JS / "package-lock.json").read_text()
    if stamp.exists() and stamp.read_text() == lock:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=JS,
        check=True,
        timeout=600,
    )
    stamp.write_text(lock)


def test_supabase_js_reads_and_subscribes(clean_database: str, tmp_path: Path) -> None:
    installed()
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_ANON_KEY=ANON_KEY,
    )
    server = start_server(["--no-worker"], env, tmp_path / "server.log")
    try:
        run = subprocess.run(
            ["node", str(JS / "supabase_flow.mjs"), server.base_url, ANON_KEY],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] is True and summary["heard"] >= 1
