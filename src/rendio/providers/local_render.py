"""The offline renderer behind the `local` provider: a real H.264 MP4 made from the prompt.

Colour bands drift across the frame in hues taken from a hash of the prompt, under the prompt's
own text, so two prompts give visibly different videos and the whole product works with no
network and no GPU. PyAV (FFmpeg in its wheel) encodes; Pillow draws the text once; numpy
builds each frame from a precomputed palette index, which keeps 720p well under real time.
"""

from __future__ import annotations

import hashlib
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

_SHORT_SIDES = {"360p": 360, "480p": 480, "720p": 720, "1080p": 1080}
_RATIOS = {"16:9": (16, 9), "9:16": (9, 16), "1:1": (1, 1), "4:3": (4, 3), "3:4": (3, 4)}


class UnsupportedFormat(ValueError):
    """An aspect ratio or resolution the renderer does not know."""


@dataclass(frozen=True)
class RenderSpec:
    prompt: str
    duration_seconds: int
    width: int
    height: int
    fps: int = 24


def frame_size(aspect_ratio: str, resolution: str) -> tuple[int, int]:
    """(width, height) for e.g. ("16:9", "720p"): the short side is the resolution."""
    if aspect_ratio not in _RATIOS or resolution not in _SHORT_SIDES:
        raise UnsupportedFormat(f"{aspect_ratio} at {resolution}")
    across, down = _RATIOS[aspect_ratio]
    short = _SHORT_SIDES[resolution]
    width: float
    height: float
    if across >= down:
        width, height = short * across / down, short
    else:
        width, height = short, short * down / across
    return _even(width), _even(height)


def _even(size: float) -> int:
    """H.264 in yuv420p wants even dimensions."""
    return round(size / 2) * 2


def _palette_seed(prompt: str) -> np.ndarray:
    digest = hashlib.sha256(prompt.encode()).digest()
    return np.array([digest[0], digest[1], digest[2]], dtype=np.float32) / 255 * 2 * math.pi


def _text_layers(
    prompt: str, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The prompt, wrapped and centred: (outline alpha, fill alpha, origin), cropped to the text.

    White letters with a dark outline stay readable over any of the colours.
    """
    size = max(14, height // 14)
    font = ImageFont.load_default(size=size)
    columns = max(8, int(width / (size * 0.6)))
    text = "\n".join(textwrap.wrap(prompt, columns)[:4]) or " "
    layers = []
    for stroke in (max(1, size // 10), 0):
        layer = Image.new("L", (width, height), 0)
        ImageDraw.Draw(layer).multiline_text(
            (width // 2, height // 2),
            text,
            fill=255,
            font=font,
            anchor="mm",
            align="center",
            spacing=size // 3,
            stroke_width=stroke,
            stroke_fill=255,
        )
        layers.append(layer)
    box = layers[0].getbbox() or (0, 0, 1, 1)
    outline, fill = (
        np.asarray(layer.crop(box), dtype=np.float32)[..., None] / 255 for layer in layers
    )
    return outline, fill, (box[0], box[1])


def render_video(
    spec: RenderSpec, path: Path, on_progress: Callable[[int], None] | None = None
) -> None:
    """Write `spec` as an MP4 at `path`, calling `on_progress(percent)` as frames are done."""
    width, height = spec.width, spec.height
    total = spec.duration_seconds * spec.fps
    seed = _palette_seed(spec.prompt)
    # Each pixel looks up one entry of a 1-D palette by its diagonal position.
    diagonal = (np.arange(height)[:, None] + np.arange(width)[None, :]).astype(np.intp)
    positions = np.arange(width + height, dtype=np.float32) / (width + height) * 2 * math.pi
    outline, fill, (left, top) = _text_layers(spec.prompt, width, height)
    rows, cols = fill.shape[:2]

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, spec.fps)
        stream.options = {"preset": "veryfast", "crf": "26"}
        for index in range(total):
            phase = 2 * math.pi * index / (spec.fps * 4)
            palette = 127 + 110 * np.sin(positions[:, None] * 2 + seed[None, :] + phase)
            frame = palette.astype(np.uint8)[diagonal]
            region = frame[top : top + rows, left : left + cols].astype(np.float32)
            darkened = region * (1 - 0.75 * outline)
            frame[top : top + rows, left : left + cols] = (
                darkened * (1 - fill) + 255 * fill
            ).astype(np.uint8)
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in stream.encode(video_frame):
                container.mux(packet)
            if on_progress is not None and (index + 1) % spec.fps == 0:
                on_progress(int((index + 1) * 100 / total))
        for packet in stream.encode():
            container.mux(packet)
