"""Encoding frames that keep their timestamps: libx264/x265, NVENC when it really opens, FFV1.

Frames enter as they left the reader (upright RGB uint8 with their pts): the output keeps the input's
timestamps and time base, so frame count, fps, VFR timing and duration match.
"""

from __future__ import annotations

import functools
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.hardware import encoder_opens
from core.presets import EncoderConfig

from .frames import ColorTags, pad_even, rgb_to_av, rgbx_to_av
from .probe import OUTPUT_FORMATS

log = logging.getLogger(__name__)


def resolve_codec(cfg: EncoderConfig) -> str:
    """The codec to use for ``cfg``: NVENC only when it opens, with a logged fallback otherwise."""
    if cfg.codec == "auto":
        return "h264_nvenc" if encoder_opens("h264_nvenc") is None else "libx264"
    if cfg.codec.endswith("_nvenc"):
        why = encoder_opens(cfg.codec)
        if why is not None:
            fallback = "libx265" if cfg.codec.startswith("hevc") else "libx264"
            log.warning("%s unavailable (%s); using %s", cfg.codec, why, fallback)
            return fallback
    return cfg.codec


@functools.cache
def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            return any(line.startswith("flags") and " avx512f" in line for line in fh)
    except OSError:
        return False


def encoder_options(codec: str, cfg: EncoderConfig) -> dict[str, str]:
    """Map the preset's quality settings onto one encoder's private options.

    libx264's AVX-512 kernels made its output vary between identical runs here (4 bitstreams in 30
    encodes of one clip; with ``asm=AVX2`` 30 of 30 matched). Resume and distributed renders must be
    bit-identical, so on AVX-512 machines x264 is held to AVX2 (implied by AVX-512, so always present).
    """
    if codec in ("libx264", "libx265"):
        opts = {"preset": cfg.preset}
        opts.update({"qp": str(cfg.qp)} if cfg.qp is not None else {"crf": str(cfg.crf)})
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
        elif _cpu_has_avx512():
            opts["x264-params"] = "asm=AVX2"
        return opts
    if codec.endswith("_nvenc"):
        return {"preset": "p4", "rc": "constqp" if cfg.qp is not None else "vbr",
                "cq" if cfg.qp is None else "qp": str(cfg.qp if cfg.qp is not None else cfg.crf)}
    return {}


class Writer:
    """Encode RGB frames into one file, keeping each frame's pts in the source time base.

    A context manager: the encoder is flushed and the file closed on every path. Odd sizes are padded
    to even (4:2:0 needs it) by repeating the last row/column.
    """

    def __init__(self, path: str | Path, *, width: int, height: int, fps: Fraction, time_base: Fraction,
                 color: ColorTags, encoder: EncoderConfig) -> None:
        path = Path(path)
        fmt = OUTPUT_FORMATS.get(path.suffix.lower())
        self.codec = resolve_codec(encoder)
        self.color = color
        self.pix_fmt = "bgr0" if self.codec == "ffv1" and encoder.pix_fmt == "yuv420p" else encoder.pix_fmt
        self._pad = any(s in self.pix_fmt for s in ("420", "422", "nv12"))
        self._container = av.open(str(path), mode="w", format=fmt)
        try:
            s = self._container.add_stream(self.codec, rate=fps)
            s.width, s.height = (width + width % 2, height + height % 2) if self._pad else (width, height)
            s.pix_fmt = self.pix_fmt
            s.time_base = time_base
            cc = s.codec_context
            cc.time_base = time_base
            if av.VideoFormat(self.pix_fmt).is_rgb:
                cc.colorspace, cc.color_range = 0, 2  # AVCOL_SPC_RGB, full: no YUV matrix involved
            else:
                cc.colorspace, cc.color_range = color.matrix, 2 if color.full_range else 1
            cc.color_primaries, cc.color_trc = color.primaries, color.trc
            # x264's frame threads make output depend on timing (seen here: two hashes for one input), and
            # slice threads change the bitstream with the count. Chunks already run in parallel, so each
            # encoder gets a fixed count (1 by default): the same job gives the same bytes on any machine.
            cc.thread_count = encoder.threads
            cc.thread_type = "SLICE"
            s.options = encoder_options(self.codec, encoder)
            self._stream = s
            self.time_base = time_base  # the muxer may change the stream's after the header is written
            self.frames_written = 0
            self._reformatter = VideoReformatter()  # one swscale context for the stream, not one per frame
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(flush=exc_type is None)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one (H, W, 3) uint8 RGB frame at ``pts`` (source time base)."""
        if self._pad:
            rgb = pad_even(rgb)
        self.write_frame(rgb_to_av(rgb, self.color, self.pix_fmt, self._reformatter), pts)

    def write_rgbx(self, rgbx: np.ndarray, pts: int) -> None:
        """:meth:`write` for (H, W, 4) uint8 pixels whose 4th byte is ignored: the same bytes as ``write``."""
        if self._pad:
            rgbx = pad_even(rgbx)
        self.write_frame(rgbx_to_av(rgbx, self.color, self.pix_fmt, self._reformatter), pts)

    def write_frame(self, frame: av.VideoFrame, pts: int) -> None:
        """Encode a frame already in the encoder's pixel format (the identity pass-through).

        Frame durations are deliberately not passed: with ``frame.duration`` set, libx264 output
        varied from run to run here. The stitcher writes each packet's source duration instead.
        """
        frame.pts = pts
        frame.time_base = self.time_base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self, flush: bool = True) -> None:
        if self._container is None:
            return
        try:
            if flush:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None
