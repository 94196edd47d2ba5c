"""The `local` provider can be polled from any worker (issue 10, defect 8): its state is in the
job's scratch folder, so a second process neither renders the job again nor loses track."""

import asyncio
import uuid
from pathlib import Path

from rendio.providers.base import GenerationRequest
from rendio.providers.local import LocalProvider


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
