"""Every provider's result passes here on its way to storage: it is opened as a video (a result
that is not one fails the job instead of reaching a user) and its first frame becomes the
thumbnail. Blocking (FFmpeg through PyAV): callers run it in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


class UnusableResult(Exception):
    """The provider's file is not a video we can show."""


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
