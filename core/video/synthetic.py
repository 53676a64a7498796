"""Synthetic clips made with PyAV: the demo's sample media and the tests' fixtures.

Seeded and deterministic. A clip can be VFR, carry audio, have a hard scene cut, odd dimensions,
rotation metadata, 10-bit or 4:4:4 pixels, and BT.601 or BT.709 colour tags, so every path of the
engine can be exercised without downloading anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from core import atomic

from .frames import ColorTags, rgb_to_av


@dataclass(frozen=True)
class ClipSpec:
    """What to generate. ``cut_at``: frame index where a different scene starts (None: one shot)."""

    width: int = 320
    height: int = 240
    frames: int = 48
    fps: Fraction = Fraction(25)
    vfr: bool = False
    audio: bool = False
    cut_at: int | None = None
    rotation: int = 0
    pix_fmt: str = "yuv420p"
    matrix: int = 6  # 1 = BT.709, 6 = BT.601 (SMPTE 170M)
    full_range: bool = False
    gop: int = 12
    codec: str = "libx264"
    crf: int = 12
    seed: int = 0
    bars: bool = False
    audio_codec: str = "aac"


def scene_frame(spec: ClipSpec, index: int) -> np.ndarray:
    """Frame ``index`` of the synthetic scene: gradient sky, textured ground, moving shapes.

    (H, W, 3) uint8 RGB. After ``cut_at`` a second, differently coloured scene is shown.
    """
    h, w = spec.height, spec.width
    if spec.bars:
        return colour_bars(w, h)
    second = spec.cut_at is not None and index >= spec.cut_at
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = index / 25.0
    if not second:
        r = 80 + 100 * x / max(w - 1, 1)
        g = 120 + 80 * y / max(h - 1, 1)
        b = 200 - 60 * y / max(h - 1, 1)
    else:
        r = 200 - 80 * y / max(h - 1, 1)
        g = 60 + 40 * x / max(w - 1, 1)
        b = 40 + 30 * np.sin(x / 9.0)
    img = np.stack([r, g, b], axis=-1)
    rng = np.random.default_rng(spec.seed + (1000 if second else 0))
    texture = rng.normal(0, 6, size=(h, w, 1)).astype(np.float32)
    img[h // 2:] += texture[h // 2:]
    img = np.clip(img, 0, 255).astype(np.uint8)
    cx = int((0.2 + 0.6 * (0.5 + 0.5 * np.sin(t * 1.3))) * w)
    cy = int(h * (0.35 + 0.1 * np.cos(t)))
    colour = (250, 220, 40) if not second else (40, 200, 250)
    cv2.circle(img, (cx, cy), max(3, min(h, w) // 8), colour, -1, lineType=cv2.LINE_AA)
    rx = int((index * 3) % max(w, 1))
    cv2.rectangle(img, (rx, int(h * 0.6)), (rx + w // 6, int(h * 0.85)), (200, 30, 60), -1)
    cv2.putText(img, f"{index}", (4, max(12, h // 10)), cv2.FONT_HERSHEY_SIMPLEX, max(h, 120) / 400,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.ascontiguousarray(img)


def colour_bars(width: int, height: int) -> np.ndarray:
    """75 % SMPTE-style bars plus a 100 % saturated row: the hardest case for a matrix mix-up."""
    bars75 = np.array([[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0],
                       [191, 0, 191], [191, 0, 0], [0, 0, 191]], np.uint8)
    bars100 = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                        [0, 255, 255], [255, 0, 255], [255, 255, 255]], np.uint8)
    img = np.zeros((height, width, 3), np.uint8)
    cols = np.minimum((np.arange(width) * 7) // max(width, 1), 6)
    top = (height * 2) // 3
    img[:top] = bars75[cols][None]
    img[top:] = bars100[cols][None]
    return img


def frame_times(spec: ClipSpec) -> tuple[Fraction, list[int]]:
    """(time base, pts per frame). VFR clips alternate 1x and 2x frame gaps."""
    if not spec.vfr:
        tb = 1 / spec.fps
        return tb, list(range(spec.frames))
    tb = Fraction(1, 90000)
    step = int(90000 / spec.fps)
    pts, t = [], 0
    for i in range(spec.frames):
        pts.append(t)
        t += step * (2 if i % 3 == 2 else 1)
    return tb, pts


def make_clip(path: str | Path, spec: ClipSpec | None = None) -> Path:
    """Write a synthetic clip to ``path`` (atomically) and return the path."""
    spec = spec or ClipSpec()
    path = Path(path)
    tb, pts = frame_times(spec)
    tags = ColorTags(matrix=spec.matrix, full_range=spec.full_range,
                     primaries=1 if spec.matrix == 1 else 6, trc=1 if spec.matrix == 1 else 6)
    with atomic.atomic_path(path) as tmp, av.open(str(tmp), mode="w") as out:
        vs = out.add_stream(spec.codec, rate=spec.fps)
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, spec.pix_fmt
        vs.time_base = tb
        cc = vs.codec_context
        cc.time_base = tb
        cc.gop_size = spec.gop
        cc.colorspace, cc.color_range = spec.matrix, 2 if spec.full_range else 1
        cc.color_primaries, cc.color_trc = tags.primaries, tags.trc
        if spec.codec == "libx264":
            vs.options = {"crf": str(spec.crf), "preset": "veryfast", "keyint": str(spec.gop),
                          "min-keyint": str(spec.gop), "scenecut": "0"}
        if spec.rotation:
            vs.set_display_rotation(spec.rotation)
        audio = out.add_stream(spec.audio_codec, rate=48000) if spec.audio else None
        if audio is not None:
            audio.codec_context.layout = "stereo"
        for i, p in enumerate(pts):
            frame = rgb_to_av(scene_frame(spec, i), tags, spec.pix_fmt)
            frame.pts, frame.time_base = p, tb
            for packet in vs.encode(frame):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if audio is not None:
            _write_tone(out, audio, seconds=float((pts[-1] + (pts[1] - pts[0] if len(pts) > 1 else 1)) * tb))
    return path


def _write_tone(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float) -> None:
    """A 440 Hz stereo tone as long as the video, encoded with the stream's codec."""
    rate, block = 48000, 1024
    total = round(seconds * rate)
    n = 0
    while n < total:
        count = min(block, total - n)
        t = (np.arange(n, n + count) / rate).astype(np.float32)
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        fmt = stream.codec_context.format.name
        if fmt == "s16":  # PCM: interleaved 16-bit
            pcm = (np.stack([tone, tone], axis=1) * 32767).astype(np.int16).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, n
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        n += count
    for packet in stream.encode(None):
        out.mux(packet)
