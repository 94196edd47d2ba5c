"""The `local` provider: renders on this machine (PyAV), so the product works offline.

It behaves like a remote provider: `submit` starts a render and returns at once, `poll`
reports progress and, at the end, the file. Renders run in a small pool of processes of their
own, at a lower CPU priority (nice 10): a render is seconds of CPU, and in the API process
(`rendio serve` runs the worker in-process) it competed with requests for the GIL and the cores.
Its state lives in the job's scratch folder, not in process memory, so any worker sharing the
data dir can poll a job another submitted:
* `render.lock` is held (an exclusive `flock`) by whichever worker process follows the render;
  the kernel releases it when that process dies, however it dies;
* `progress` holds the percentage done; `video.mp4` appears, renamed into place, when done.
A poll that finds no output and no render holding the lock starts the render itself (a render
lost with its process); rendering is deterministic, so a repeat gives the same video.

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
import contextlib
import ctypes
import fcntl
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import IO

from rendio.providers.base import GenerationRequest, PollResult, ProviderError, Submission
from rendio.providers.local_render import RenderSpec, frame_size, render_video

OUTPUT_NAME = "video.mp4"
RENDER_NICENESS = 10
# A job whose render kills its process this many times (say, out of memory) fails instead of
# being started again until its deadline.
MAX_RENDER_CRASHES = 3
_PAUSE_SLICE = 0.1
_PARENT_CHECK_SECONDS = 1.0


class RenderStopped(Exception):
    """The render was abandoned because its process is stopping."""


_LOCK_NAME = "render.lock"
_PROGRESS_NAME = "progress"


def _read_progress(workdir: Path) -> int:
    try:
        return int((workdir / _PROGRESS_NAME).read_text() or 0)
    except (OSError, ValueError):
        return 0


def _try_lock(workdir: Path) -> IO[bytes] | None:
    """The render lock of a job, if nobody holds it (None: a render is running elsewhere)."""
    workdir.mkdir(parents=True, exist_ok=True)
    handle = (workdir / _LOCK_NAME).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


# In a render process: the owning provider's flag, 1 once it stops. A plain shared byte, not a
# multiprocessing Event: an Event's `set()` waits for every process sleeping on it to wake,
# and one killed while waiting never does.
_stopping: ctypes.c_byte | None = None


def _start_render_process(stopping: ctypes.c_byte, parent: int) -> None:
    """`parent` is the worker's pid as the worker saw it: one killed while this process was
    starting is already gone, and `os.getppid()` would name the process that adopted it."""
    global _stopping
    _stopping = stopping
    os.nice(RENDER_NICENESS)
    # Ctrl+C in a terminal reaches the whole process group; the worker stops its renders.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True
    ).start()


def _exit_with_parent(parent: int) -> None:
    """A render process outlives a killed worker otherwise: it waits for work on a queue whose
    other end it holds itself, for ever (~80 MB each). Its render is started again by whichever
    worker polls the job next, the lock having gone with the dead one."""
    while os.getppid() == parent:
        time.sleep(_PARENT_CHECK_SECONDS)
    os._exit(0)


def _stopped() -> bool:
    return _stopping is not None and bool(_stopping.value)


def _render(spec: RenderSpec, workdir: Path, delay: float) -> None:
    """Render a job into its folder (runs in a render process; the caller holds the lock)."""

    def progress(percent: int) -> None:
        (workdir / _PROGRESS_NAME).write_text(str(percent))
        pause_until = time.monotonic() + delay / max(1, spec.duration_seconds)
        while True:
            if _stopped():
                raise RenderStopped("the process is stopping")
            left = pause_until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, _PAUSE_SLICE))

    partial = workdir / f"{OUTPUT_NAME}.{os.getpid()}.partial"
    render_video(spec, partial, progress)
    partial.replace(workdir / OUTPUT_NAME)


class LocalProvider:
    name = "local"
    calls_back = False

    def __init__(self, max_parallel: int = 2) -> None:
        self._renders: dict[str, asyncio.Future[None]] = {}
        self._submits: Counter[str] = Counter()
        self._crashes: Counter[str] = Counter()
        self._max_parallel = max_parallel
        # Spawned, not forked: the parent runs threads (an event loop, a database pool).
        self._context = multiprocessing.get_context("spawn")
        self._stopping = self._context.Value("b", 0, lock=False)
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        """Render processes start on the first render, and stay for the next ones."""
        return ProcessPoolExecutor(
            max_workers=self._max_parallel,
            mp_context=self._context,
            initializer=_start_render_process,
            initargs=(self._stopping, os.getpid()),
        )

    async def submit(self, request: GenerationRequest) -> Submission:
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
        self._submits.pop(key, None)
        if simulate not in ("hang", "fail"):
            self._start_unless_running(key, request)
        return Submission(key)

    def _start_unless_running(self, key: str, request: GenerationRequest) -> bool:
        """Start rendering here unless a render of this job runs (here or in another process)."""
        if key in self._renders:
            return False
        lock = _try_lock(request.workdir)
        if lock is None:
            return False
        try:
            if (request.workdir / OUTPUT_NAME).is_file():  # finished while we looked
                lock.close()
                return False
            task = self._submit_render(request)
        except BaseException:
            lock.close()
            raise
        # This process holds the lock while its render runs, and loses it if it dies: then
        # another worker starts the render again (its render processes exit with it).
        task.add_done_callback(lambda _: lock.close())
        self._renders[key] = task
        return True

    def _submit_render(self, request: GenerationRequest) -> asyncio.Future[None]:
        width, height = frame_size(request.aspect_ratio, request.resolution)
        spec = RenderSpec(request.prompt, request.duration, width, height)
        delay = float(request.options.get("delay_seconds", 0))
        loop = asyncio.get_running_loop()
        try:
            return loop.run_in_executor(self._pool, _render, spec, request.workdir, delay)
        except BrokenProcessPool:  # a render process was killed: start a new pool
            self._pool = self._new_pool()
            return loop.run_in_executor(self._pool, _render, spec, request.workdir, delay)

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult:
        simulate = request.options.get("simulate")
        if simulate == "hang":
            return PollResult("running", progress=0)
        if simulate == "fail":
            return PollResult("failed", error="the local renderer was asked to fail")
        task = self._renders.get(provider_job_id)
        if task is not None and task.done():
            self._renders.pop(provider_job_id, None)
            error = task.exception()
            if isinstance(error, BrokenProcessPool):
                # A killed render process took the render (and the pool's others) with it: it
                # is started again below, unless it is what keeps killing its process.
                self._crashes[provider_job_id] += 1
                if self._crashes[provider_job_id] >= MAX_RENDER_CRASHES:
                    del self._crashes[provider_job_id]
                    return PollResult("failed", error="the render process died, repeatedly")
            elif error is not None and not isinstance(error, RenderStopped):
                return PollResult("failed", error=f"render failed: {type(error).__name__}")
        output = request.workdir / OUTPUT_NAME
        if output.is_file():
            self._crashes.pop(provider_job_id, None)
            return PollResult("completed", progress=100, video=output)
        if task is None or task.done():
            # Nobody here renders it: another process does (it holds the lock), or the
            # render was lost with its process and starts again here.
            self._start_unless_running(provider_job_id, request)
        return PollResult("running", progress=_read_progress(request.workdir))

    async def aclose(self) -> None:
        """At shutdown: queued renders are dropped and running ones stop at their next frame
        second (a later poll, here or in another worker, starts them again), so a stopping
        process does not wait for videos nobody will collect."""
        self._stopping.value = 1
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        # A render already running is not interrupted; forgetting it lets its output be
        # ignored (its scratch folder goes with the job, and a render that finds it gone fails).
        task = self._renders.pop(provider_job_id, None)
        if task is not None:
            task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[None]) -> None:
    """Collect a forgotten render's outcome so that its failure is not logged as unhandled."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        task.exception()
