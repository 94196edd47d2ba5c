"""Generation against real processes: `rendio serve` with its worker, and a standalone
`rendio worker` killed with -9 in the middle of a job."""

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import av
import httpx

from tests.helpers.factories import LOCAL_ID, add_models, simulated_model
from tests.helpers.live import onboard, start_job, status_of, wait_until
from tests.helpers.processes import (
    LiveServer,
    credits_verify,
    fast_env,
    start_server,
    start_worker,
)


def test_serve_with_its_worker_makes_a_video(clean_database: str, tmp_path: Path) -> None:
    server = start_server([], fast_env(clean_database, tmp_path / "data"), tmp_path / "s.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            headers = onboard(http)
            job_id = start_job(http, headers, LOCAL_ID, duration=4)
            status = wait_until(http, headers, job_id, {"completed", "failed"})
            assert status["status"] == "completed", status
            video = http.get(status["video_url"])
            assert video.status_code == 200
            (tmp_path / "v.mp4").write_bytes(video.content)
            with av.open(str(tmp_path / "v.mp4")) as container:
                assert container.streams.video[0].codec_context.name == "h264"
                assert float(container.duration / av.time_base) == 4.0
    finally:
        server.stop()


def run_and_kill_worker(
    env: dict[str, str], tmp_path: Path, model_id: str
) -> tuple[dict[str, Any], dict[str, int]]:
    """Start a job, kill its worker with -9 once the job is processing, start another worker;
    return the job's final status and the user's credits."""
    server: LiveServer = start_server(["--no-worker"], env, tmp_path / "s.log")
    worker = start_worker(env, tmp_path / "w1.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            headers = onboard(http)
            job_id = start_job(http, headers, model_id, duration=2)
            wait_until(http, headers, job_id, {"processing"}, timeout=30)
            time.sleep(1)
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            assert status_of(http, headers, job_id)["status"] == "processing"
            worker = start_worker(env, tmp_path / "w2.log")
            final = wait_until(http, headers, job_id, {"completed", "failed"})
            credits = http.get("/functions/v1/get-user-credits", headers=headers).json()
    finally:
        worker.terminate()
        worker.wait(20)
        server.stop()
    assert credits_verify(env["RENDIO_DATABASE_URL"]).returncode == 0
    return final, credits


def test_a_worker_killed_between_polls_is_recovered(clean_database: str, tmp_path: Path) -> None:
    """The render died with its worker; the next worker's poll starts it again: completed,
    charged once (10 - 2)."""
    (slow,) = add_models(clean_database, simulated_model("slow", delay_seconds=6))
    final, credits = run_and_kill_worker(
        fast_env(clean_database, tmp_path / "data"), tmp_path, slow
    )
    assert final["status"] == "completed"
    assert credits["credits_remaining"] == 8


def test_a_task_of_a_killed_worker_is_run_again_and_refunds_once(
    clean_database: str, tmp_path: Path
) -> None:
    """Killed while its task is running (here: waiting between submit retries), the job's task
    is found stalled by the next worker's sweeper and run again; it fails once, refunds once."""
    (down,) = add_models(clean_database, simulated_model("down", simulate="unavailable"))
    env = fast_env(clean_database, tmp_path / "data")
    env.update(RENDIO_PROVIDER_RETRY_INITIAL="2", RENDIO_PROVIDER_RETRY_MAX="2")
    final, credits = run_and_kill_worker(env, tmp_path, down)
    assert final["error"]["code"] == "ERR_5002"
    assert credits["credits_remaining"] == 10
    log = (tmp_path / "w2.log").read_text()
    # The second worker's sweeps retried the stalled task (two, not one, when the kill also
    # caught a sweep of w1's own mid-run), and the job's task ran there again.
    assert any(int(count) >= 1 for count in re.findall(r'"retried": (\d+)', log)), log
    assert "Starting job generation:advance_job" in log, log
