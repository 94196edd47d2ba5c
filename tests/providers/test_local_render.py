"""The offline renderer makes real, decodable H.264 MP4s derived from the prompt."""

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from rendio.generation.media import probe_and_thumbnail
from rendio.providers.local_render import (
    RenderSpec,
    UnsupportedFormat,
    frame_size,
    render_video,
)


def test_frame_sizes() -> None:
    assert frame_size("16:9", "360p") == (640, 360)
    assert frame_size("9:16", "720p") == (720, 1280)
    assert frame_size("1:1", "360p") == (360, 360)
    with pytest.raises(UnsupportedFormat):
        frame_size("2:1", "360p")
    with pytest.raises(UnsupportedFormat):
        frame_size("16:9", "8k")


def first_and_last_frames(path: Path) -> tuple[int, list[np.ndarray]]:
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return len(frames), [frames[0], frames[-1]]


def test_renders_an_h264_mp4_of_the_requested_length_and_size(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    progress: list[int] = []
    render_video(
        RenderSpec("a red fox in the snow", duration_seconds=2, width=640, height=360),
        path,
        progress.append,
    )
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (640, 360)
        assert float(container.duration / av.time_base) == pytest.approx(2.0, abs=0.1)
    count, (first, last) = first_and_last_frames(path)
    assert count == 48
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 5, "the picture moves"
    assert progress == [50, 100]

    thumbnail = tmp_path / "thumb.jpg"
    info = probe_and_thumbnail(path, thumbnail)
    assert (info.codec, info.width, info.height) == ("h264", 640, 360)
    assert info.duration_seconds == pytest.approx(2.0, abs=0.1)
    with Image.open(thumbnail) as image:
        assert image.format == "JPEG"
        assert image.size == (640, 360)


def test_different_prompts_look_different(tmp_path: Path) -> None:
    frames = []
    for number, prompt in enumerate(["a cat", "a spaceship over the sea"]):
        path = tmp_path / f"{number}.mp4"
        render_video(RenderSpec(prompt, duration_seconds=1, width=360, height=640), path)
        count, (first, _) = first_and_last_frames(path)
        assert count == 24
        assert first.shape == (640, 360, 3)
        frames.append(first)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() > 5
