"""The `local` provider: renders on this machine (PyAV), so the product works offline.

It behaves like a remote provider: `submit` starts a render in a thread and returns at once,
`poll` reports progress and, at the end, the file. A render lost with its process (a crash, a
restart, another worker polling) is simply started again: rendering is deterministic and the
output is renamed into place atomically.

Model options (`options` in the catalog) make it misbehave on purpose, so every failure path
can be driven end to end:
* `simulate: reject`       — submit is refused (not retryable)             → ERR_5003
* `simulate: unavailable`  — submit always fails retryably                 → ERR_5002
* `simulate: flaky`        — the first `flaky_failures` submits fail retryably, then it works
* `simulate: fail`         — the render reports failure                    → ERR_5003
* `simulate: hang`         — the render never finishes                     → ERR_5001 at deadline
* `delay_seconds: N`       — the render takes at least N seconds (progress still reported)
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rendio.providers.base import GenerationRequest, PollResult, ProviderError
from rendio.providers.local_render import RenderSpec, frame_size, render_video

OUTPUT_NAME = "video.mp4"


@dataclass
class _Render:
    progress: int = 0
    task: asyncio.Future[None] | None = field(default=None, repr=False)


class LocalProvider:
    name = "local"

    def __init__(self, max_parallel: int = 2) -> None:
        self._renders: dict[str, _Render] = {}
        self._submits: Counter[str] = Counter()
        # Renders are CPU-bound: a pool of their own keeps them from starving the default
        # executor (thumbnails, file copies) and bounds how many run at once.
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="render")

    async def submit(self, request: GenerationRequest) -> str:
        key = str(request.job_id)
        simulate = request.options.get("simulate")
        self._submits[key] += 1
        if simulate == "reject":
            self._submits.pop(key, None)
            raise ProviderError("the local renderer refused this request", retryable=False)
        if simulate == "unavailable":
            raise ProviderError("the local renderer is unavailable", retryable=True)
        if simulate == "flaky" and self._submits[key] <= int(
            request.options.get("flaky_failures", 1)
        ):
            raise ProviderError("the local renderer hiccupped", retryable=True)
        if simulate not in ("hang", "fail"):
            self._start(key, request)
        return key

    def _start(self, key: str, request: GenerationRequest) -> None:
        width, height = frame_size(request.aspect_ratio, request.resolution)
        spec = RenderSpec(request.prompt, request.duration, width, height)
        delay = float(request.options.get("delay_seconds", 0))
        state = _Render()

        def progress(percent: int) -> None:
            state.progress = percent
            if delay:
                time.sleep(delay / max(1, request.duration))

        def render() -> None:
            request.workdir.mkdir(parents=True, exist_ok=True)
            partial = request.workdir / f"{OUTPUT_NAME}.{os.getpid()}.partial"
            render_video(spec, partial, progress)
            partial.replace(request.workdir / OUTPUT_NAME)

        state.task = asyncio.get_running_loop().run_in_executor(self._pool, render)
        self._renders[key] = state

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        simulate = request.options.get("simulate")
        if simulate == "hang":
            return PollResult("running", progress=0)
        if simulate == "fail":
            return PollResult("failed", error="the local renderer was asked to fail")
        output = request.workdir / OUTPUT_NAME
        state = self._renders.get(provider_job_id)
        if state is None:
            if output.is_file():
                return PollResult("completed", progress=100, video=output)
            self._start(provider_job_id, request)  # lost with another process: render again
            return PollResult("running", progress=0)
        if state.task is None or not state.task.done():
            return PollResult("running", progress=state.progress)
        self._renders.pop(provider_job_id, None)
        self._submits.pop(provider_job_id, None)
        error = state.task.exception()
        if error is not None:
            return PollResult("failed", error=f"render failed: {type(error).__name__}")
        return PollResult("completed", progress=100, video=output)

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        # A thread cannot be interrupted; forgetting it lets its output be ignored.
        self._renders.pop(provider_job_id, None)
        self._submits.pop(provider_job_id, None)
