"""The `local` provider can be polled from any worker (issue 10, defect 8): its state is in the
job's scratch folder, so a second process neither renders the job again nor loses track."""

import asyncio
import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from rendio.providers.base import GenerationRequest, PollResult
from rendio.providers.local import LocalProvider, RenderStopped
from tests.helpers.waiting import eventually


def request(workdir: Path, **options: object) -> GenerationRequest:
    return GenerationRequest(
        job_id=uuid.uuid4(),
        provider_model_id="local-v1",
        prompt="two workers, one render",
        duration=1,
        aspect_ratio="16:9",
        resolution="360p",
        image_url=None,
        options=dict(options),
        workdir=workdir,
    )


async def wait_completed(provider: LocalProvider, job: GenerationRequest, pid: str) -> None:
    for _ in range(300):
        if (await provider.poll(pid, job)).status == "completed":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the render did not complete")


async def test_a_second_worker_follows_a_render_it_did_not_start(tmp_path: Path) -> None:
    first, second = LocalProvider(), LocalProvider()
    job = request(tmp_path / "job", delay_seconds=1.5)
    pid = (await first.submit(job)).provider_job_id
    polled = await second.poll(pid, job)
    assert polled.status == "running"
    assert second._renders == {}, "the second worker started a render of its own"
    await wait_completed(second, job, pid)
    assert second._renders == {}
    assert len(list(job.workdir.glob("*.partial"))) == 0
    result = await first.poll(pid, job)
    assert result.status == "completed"
    assert result.video == job.workdir / "video.mp4"


async def test_a_render_lost_with_its_process_is_started_again(tmp_path: Path) -> None:
    job = request(tmp_path / "job")
    job.workdir.mkdir(parents=True)
    (job.workdir / "progress").write_text("40")  # what a killed worker leaves behind
    survivor = LocalProvider()
    assert (await survivor.poll(str(job.job_id), job)).status == "running"
    assert str(job.job_id) in survivor._renders
    await wait_completed(survivor, job, str(job.job_id))


async def test_renders_run_in_a_process_of_their_own_at_a_lower_priority(tmp_path: Path) -> None:
    """A render is seconds of CPU: in the API's process (`rendio serve` runs the worker) it
    held the GIL and the cores against requests."""
    provider = LocalProvider()
    job = request(tmp_path / "job", delay_seconds=2)
    pid = (await provider.submit(job)).provider_job_id
    partials = await eventually(lambda: list(job.workdir.glob("*.partial")))
    assert partials, "no render started"
    renderer = int(partials[0].name.split(".")[-2])  # video.mp4.<pid>.partial
    assert renderer != os.getpid()
    assert os.getpriority(os.PRIO_PROCESS, renderer) == os.getpriority(os.PRIO_PROCESS, 0) + 10
    os.kill(renderer, signal.SIGINT)  # Ctrl+C reaches the process group: the worker decides

    async def completed() -> bool:
        polled = await provider.poll(pid, job)
        assert polled.status != "failed", polled.error
        return polled.status == "completed"

    assert await eventually(completed, timeout=15), "the render did not complete"
    await provider.aclose()


async def test_a_stopping_provider_abandons_its_render(tmp_path: Path) -> None:
    """At shutdown a render stops at its next frame second instead of holding the process."""
    provider = LocalProvider()
    job = dataclasses.replace(request(tmp_path / "job", delay_seconds=60), duration=2)
    pid = (await provider.submit(job)).provider_job_id

    async def progress() -> int | None:
        return (await provider.poll(pid, job)).progress

    assert await eventually(progress), "the render did not start"
    render = provider._renders[pid]
    await provider.aclose()
    with pytest.raises(RenderStopped):
        await asyncio.wait_for(render, 25)  # not a timing: a render not stopped runs 60 s
    assert not (job.workdir / "video.mp4").exists()


async def test_a_killed_render_process_is_started_again_then_given_up_on(tmp_path: Path) -> None:
    """A render process that dies (out of memory, say) is started again, but a render that keeps
    killing its process fails instead of restarting until the job's deadline."""
    provider = LocalProvider(max_parallel=1)
    job = dataclasses.replace(request(tmp_path / "job", delay_seconds=60), duration=2)
    pid = (await provider.submit(job)).provider_job_id
    killed: list[int] = []

    async def ended() -> PollResult | None:
        polled = await provider.poll(pid, job)
        for partial in job.workdir.glob("*.partial"):
            renderer = int(partial.name.split(".")[-2])
            if renderer not in killed:
                os.kill(renderer, signal.SIGKILL)
                killed.append(renderer)
        return polled if polled.status != "running" else None

    polled = await eventually(ended, timeout=30)
    assert polled is not None, "the job never ended"
    assert len(killed) == 3  # started again after the first two deaths
    assert (polled.status, polled.error) == ("failed", "the render process died, repeatedly")
    await provider.aclose()


@pytest.mark.parametrize("moment", ["while it renders", "while its renderer starts"])
async def test_render_processes_end_with_a_killed_worker(tmp_path: Path, moment: str) -> None:
    """A worker killed with -9 leaves no render process behind (they waited for work for ever,
    ~80 MB each), even one still starting when the worker died; its render is started again by
    the next worker to poll the job."""
    wait = "while not list(job.workdir.glob('*.partial')): await asyncio.sleep(0.05)"
    script = f"""
import asyncio, dataclasses, os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tests.providers.test_local_provider import request
from rendio.providers.local import LocalProvider

async def main():
    provider = LocalProvider()
    job = request(Path({str(tmp_path / "job")!r}), delay_seconds=60)
    job = dataclasses.replace(job, duration=2)
    await provider.submit(job)
    {wait if moment == "while it renders" else "pass"}
    print(*provider._pool._processes, flush=True)  # the render processes' pids
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""
    killed = subprocess.run(
        [sys.executable, "-c", script], timeout=60, check=False, capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL
    renderers = [int(pid) for pid in killed.stdout.split()]
    assert renderers

    def gone() -> bool:
        for renderer in renderers:
            try:
                os.kill(renderer, 0)
            except ProcessLookupError:
                continue
            return False
        return True

    # A bound, not a timing: they used to live for ever.
    assert await eventually(gone, timeout=30), "a render process outlived its worker"
