"""Every provider's result passes here on its way to storage: fetched from the provider while
its URL still works (streamed to disk, with a size cap and time limits), opened as a video (a
result that is not one fails the job instead of reaching a user), and its first frame made the
thumbnail unless the provider gave one. Probing is blocking (FFmpeg through PyAV): callers run
it in a thread."""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
from PIL import Image, UnidentifiedImageError

from rendio.providers.base import Download, ProviderError

# A provider's result URL that answers these has expired or was taken down: asking again will
# not help (fal keeps results 6 min to 1 h, Replicate 1 h).
_GONE = {401, 403, 404, 410}
_CHUNK = 1 << 16


class UnusableResult(Exception):
    """The provider's file is not a video we can show."""


class ExpiredResult(Exception):
    """The provider's result can no longer be fetched."""


async def fetch(download: Download, target: Path, *, max_bytes: int, seconds: float) -> int:
    """Stream `download` into `target`; return its size.

    ExpiredResult when the URL is gone, UnusableResult when it is larger than `max_bytes`,
    a retryable ProviderError for what may pass (timeouts, 408, 429, 5xx, a cut connection).
    The whole fetch is bounded by `seconds`, so a trickling server cannot hold a worker.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        async with asyncio.timeout(seconds):
            size = await _stream(download, partial, max_bytes)
    except TimeoutError:
        partial.unlink(missing_ok=True)
        raise ProviderError("the result download took too long", retryable=True) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return size


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every download: building one loads the CA bundle, ~36 ms of CPU,
    which a worker copying dozens of results a second cannot pay each time."""
    return httpx.create_ssl_context()


async def _stream(download: Download, partial: Path, max_bytes: int) -> int:
    limits = httpx.Timeout(30.0, connect=10.0)
    try:
        async with (
            httpx.AsyncClient(timeout=limits, follow_redirects=True, verify=_tls()) as client,
            client.stream("GET", download.url, headers=download.headers) as response,
        ):
            if response.status_code in _GONE:
                raise ExpiredResult(f"the result URL answered {response.status_code}")
            if response.status_code in (408, 429) or response.status_code >= 500:
                raise ProviderError(
                    f"the result URL answered {response.status_code}", retryable=True
                )
            if response.status_code != 200:
                raise UnusableResult(f"the result URL answered {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise UnusableResult(f"the result is larger than {max_bytes} bytes")
            size = 0
            with partial.open("wb") as sink:
                async for chunk in response.aiter_bytes(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise UnusableResult(f"the result is larger than {max_bytes} bytes")
                    sink.write(chunk)
            return size
    except httpx.HTTPError as error:
        raise ProviderError(f"fetching the result failed: {error!r}", retryable=True) from None


@dataclass(frozen=True)
class VideoInfo:
    codec: str
    width: int
    height: int
    duration_seconds: float | None


def probe_and_thumbnail(video: Path, thumbnail: Path) -> VideoInfo:
    """Read the video's first stream, write its first frame to `thumbnail` as a JPEG."""
    try:
        with av.open(str(video)) as container:
            if not container.streams.video:
                raise UnusableResult("the file has no video stream")
            stream = container.streams.video[0]
            frame = next(container.decode(video=0), None)
            if frame is None:
                raise UnusableResult("the video has no frames")
            image = frame.to_image()  # type: ignore[no-untyped-call]  # PyAV leaves it unannotated
            image.save(thumbnail, format="JPEG", quality=85)
            duration = container.duration / av.time_base if container.duration else None
            return VideoInfo(
                codec=stream.codec_context.name,
                width=stream.width,
                height=stream.height,
                duration_seconds=duration,
            )
    except av.FFmpegError as error:
        raise UnusableResult(f"not a readable video: {error}") from None


def as_jpeg(image: Path, thumbnail: Path) -> None:
    """Re-encode a provider's thumbnail (any format Pillow reads) as our JPEG; ValueError if it
    is not an image."""
    try:
        with Image.open(image) as opened:
            opened.convert("RGB").save(thumbnail, format="JPEG", quality=85)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"not a readable image: {error}") from None
