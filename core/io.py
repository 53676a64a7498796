"""Video I/O on PyAV: probe, a frame reader with seeking, and an encoder that keeps timestamps.

Frames leave the reader upright, RGB uint8 (the frame contract of :mod:`core.frames`), with their
global index and source pts, and enter the writer the same way: output keeps the input's timestamps and
time base, so frame count, fps, VFR timing and duration match.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import MediaNotFoundError, RenderError, UnsupportedVideoError
from .frames import (
    ColorTags,
    Frame,
    av_to_rgb,
    av_to_rgbx,
    guess_color_tags,
    pad_even,
    rgb_to_av,
    rgbx_to_av,
    rotate_upright,
)
from .hardware import encoder_opens
from .presets import DECODERS, EncoderConfig

log = logging.getLogger(__name__)

#: Output containers we write (H.264/HEVC/FFV1 in them); chunks use the output's container too.
OUTPUT_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


@dataclass(frozen=True)
class AudioInfo:
    """One audio stream as probed."""

    index: int
    codec: str
    sample_rate: int
    channels: int
    layout: str
    duration: float | None
    time_base: str


@dataclass(frozen=True)
class VideoInfo:
    """What the studio needs to know about an input, from one demux pass plus one decoded frame.

    ``pts`` lists every frame's timestamp in presentation order (``time_base`` units); ``keyframes``
    holds the pts of frames a decoder can start from. ``rotation`` is FFmpeg's display rotation in
    degrees counter-clockwise; ``width``/``height`` are the upright (displayed) size.
    """

    path: str
    size_bytes: int
    container: str
    codec: str
    coded_width: int
    coded_height: int
    width: int
    height: int
    rotation: int
    fps: Fraction
    time_base: Fraction
    duration: float
    frame_count: int
    vfr: bool
    pix_fmt: str
    bit_depth: int
    color: ColorTags
    color_tagged: bool
    stream_index: int
    audio: tuple[AudioInfo, ...] = ()
    pts: tuple[int, ...] = field(default=(), repr=False)
    durations: tuple[int, ...] = field(default=(), repr=False)
    keyframes: tuple[int, ...] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        """The probe report: everything but the per-frame lists, with exact fractions as strings."""
        d = asdict(self)
        for k in ("pts", "durations", "keyframes"):
            d.pop(k)
        d["fps"] = f"{self.fps.numerator}/{self.fps.denominator}"
        d["fps_float"] = round(float(self.fps), 6)
        d["time_base"] = f"{self.time_base.numerator}/{self.time_base.denominator}"
        d["keyframe_count"] = len(self.keyframes)
        d["color"] = {"matrix": self.color.label.split("/")[0], "range": self.color.label.split("/")[1],
                      "primaries": self.color.primaries, "trc": self.color.trc, "tagged": self.color_tagged}
        d.pop("color_tagged")
        d["audio"] = [asdict(a) for a in self.audio]
        d["odd_size"] = bool(self.width % 2 or self.height % 2)
        return d

    @functools.cached_property
    def keyframe_indices(self) -> tuple[int, ...]:
        """Frame indices (presentation order) a decoder can start from, ascending."""
        keys = set(self.keyframes)
        return tuple(i for i, p in enumerate(self.pts) if p in keys)

    @property
    def encoded_size(self) -> tuple[int, int]:
        """(width, height) written by 4:2:0 encoders: odd sizes are padded by one edge row/column."""
        return self.width + self.width % 2, self.height + self.height % 2


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise MediaNotFoundError(f"{path}: no such file") from None
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"{path}: not a video file FFmpeg can read ({_why(exc)})") from None


def _why(exc: Exception) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return msg.split(":")[0] if "':" not in msg else msg.rsplit(":", 1)[-1].strip()


def check_input_file(path: Path) -> None:
    """Cheap checks before any decoding: exists, is a file, is not empty, is readable."""
    if not path.exists():
        raise MediaNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise UnsupportedVideoError(f"{path}: is a directory, expected a video file")
    if path.stat().st_size == 0:
        raise UnsupportedVideoError(f"{path}: file is empty")
    if not os.access(path, os.R_OK):
        raise UnsupportedVideoError(f"{path}: not readable (permission denied)")


def _audio_info(container: av.container.InputContainer, extents: dict[int, list[int]]) -> tuple[AudioInfo, ...]:
    """Audio streams; durations measured from the packets (many containers do not state them)."""
    out = []
    for s in container.streams.audio:
        cc = s.codec_context
        lo_hi = extents.get(s.index)
        if lo_hi and s.time_base:
            dur: float | None = float((lo_hi[1] - lo_hi[0]) * s.time_base)
        else:
            dur = float(s.duration * s.time_base) if s.duration and s.time_base else None
        out.append(AudioInfo(
            index=s.index, codec=cc.name, sample_rate=cc.sample_rate or 0, channels=cc.channels or 0,
            layout=getattr(cc.layout, "name", ""), duration=dur, time_base=str(s.time_base),
        ))
    return tuple(out)


def probe(path: str | Path) -> VideoInfo:
    """Probe a video: one demux pass for exact frame timestamps and keyframes, one decoded frame.

    Raises MediaNotFoundError / UnsupportedVideoError with a one-line reason naming the file.
    """
    path = Path(path)
    check_input_file(path)
    with _open(path) as c:
        fmt = c.format.name
        if fmt.endswith("_pipe") or fmt in ("image2", "gif", "apng"):
            raise UnsupportedVideoError(f"{path}: is a still image ({fmt.removesuffix('_pipe')}), not a video")
        if not c.streams.video:
            what = "audio only" if c.streams.audio else "no streams"
            raise UnsupportedVideoError(f"{path}: has no video stream ({what})")
        vs = c.streams.video[0]
        cc = vs.codec_context
        tb = vs.time_base
        if tb is None:
            raise UnsupportedVideoError(f"{path}: video stream has no time base")
        pts: list[int] = []
        durs: list[int] = []
        keys: list[int] = []
        missing_pts = 0
        audio_extents: dict[int, list[int]] = {}
        try:
            for p in c.demux(vs, *c.streams.audio):
                if p.size == 0:
                    continue
                if p.stream.type == "audio":
                    if p.pts is not None:
                        end = p.pts + (p.duration or 0)
                        ext = audio_extents.setdefault(p.stream.index, [p.pts, end])
                        ext[0], ext[1] = min(ext[0], p.pts), max(ext[1], end)
                    continue
                if p.pts is None:
                    missing_pts += 1
                    continue
                pts.append(p.pts)
                durs.append(p.duration or 0)
                if p.is_keyframe:
                    keys.append(p.pts)
        except av.error.FFmpegError as exc:
            raise UnsupportedVideoError(f"{path}: unreadable video data ({_why(exc)})") from None
        if missing_pts and not pts:
            raise UnsupportedVideoError(f"{path}: video has no timestamps (raw stream?); remux it into .mp4 or .mkv")
        if not pts:
            raise UnsupportedVideoError(f"{path}: no decodable video frames")
        order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
        pts_sorted = [pts[i] for i in order]
        if len(set(pts_sorted)) != len(pts_sorted):
            raise UnsupportedVideoError(f"{path}: duplicate video timestamps; the file is damaged")
        durs_sorted = _frame_durations(pts_sorted, [durs[i] for i in order])
        first = _first_frame(c, vs, path)
        rotation = round(first.rotation or 0) % 360
        if first.pts is not None and first.pts not in set(pts_sorted):
            log.warning("%s: first decoded pts %s not among packet pts", path, first.pts)
        tagged = cc.colorspace in (1, 5, 6, 7, 9, 10)
        tags = guess_color_tags(cc.colorspace or first.colorspace, int(cc.color_range or first.color_range),
                                vs.height or first.height, int(cc.color_primaries or 2), int(cc.color_trc or 2))
        fmt_obj = av.VideoFormat(cc.format.name if cc.format else first.format.name)
        bit_depth = max(comp.bits for comp in fmt_obj.components)
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        steps = np.diff(np.asarray(pts_sorted, dtype=np.int64))
        # millisecond-rounded time bases jitter by a tick (41/42 ms at 24 fps); that is not VFR
        vfr = bool(len(steps) > 1 and (steps.max() - steps.min()) > max(1.0, 0.1 * steps.mean()))
        duration_ticks = pts_sorted[-1] + durs_sorted[-1] - pts_sorted[0]
        # the container's average rate, else measured from the timestamps (guessed_rate is often 1/time_base)
        fps = vs.average_rate or (
            (Fraction(len(pts_sorted)) / (Fraction(duration_ticks) * tb)).limit_denominator(1001 * 1000)
            if duration_ticks else Fraction(25))
        return VideoInfo(
            path=str(path.resolve()), size_bytes=path.stat().st_size, container=fmt, codec=cc.name,
            coded_width=first.width, coded_height=first.height, width=w, height=h, rotation=rotation,
            fps=Fraction(fps), time_base=Fraction(tb), duration=float(duration_ticks * tb),
            frame_count=len(pts_sorted), vfr=vfr, pix_fmt=fmt_obj.name, bit_depth=bit_depth, color=tags,
            color_tagged=tagged, stream_index=vs.index, audio=_audio_info(c, audio_extents), pts=tuple(pts_sorted),
            durations=tuple(durs_sorted), keyframes=tuple(sorted(keys)),
        )


def _frame_durations(pts: list[int], packet_durs: list[int]) -> list[int]:
    """Per-frame durations: the gap to the next frame; the last frame keeps its packet duration."""
    out = [b - a for a, b in itertools.pairwise(pts)]
    last = packet_durs[-1] if packet_durs and packet_durs[-1] > 0 else (out[-1] if out else 1)
    return [*out, last]


def _first_frame(c: av.container.InputContainer, vs: av.video.stream.VideoStream, path: Path) -> av.VideoFrame:
    c.seek(0, stream=vs)
    try:
        for frame in c.decode(vs):
            return frame
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"{path}: no decodable video frames ({_why(exc)})") from None
    raise UnsupportedVideoError(f"{path}: no decodable video frames")


def _as_stream_format(frame: av.VideoFrame, pix_fmt: str) -> av.VideoFrame:
    """A device-downloaded frame (interleaved chroma) in the stream's planar format, samples unchanged:
    swscale's unscaled path only moves them (NV12 -> yuv420p and P010 -> yuv420p10le round-trip exactly)."""
    out = frame.reformat(format=pix_fmt)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out


class _SeekMissed(Exception):
    """A seek landed after the frame we asked for."""


def _open_decoding(path: Path, decode: str) -> tuple[av.container.InputContainer, str]:
    """The container for ``decode`` ("cpu", "cuda"), and a note: "" when the device opened, else why the
    CPU decodes instead (no device, no driver, a build without it). FFmpeg itself still falls back to its
    software decoder for a stream the device cannot take (an unsupported codec or profile)."""
    if decode == "cpu":
        return _open(path), ""
    if decode not in DECODERS:
        raise ValueError(f"decode: {decode!r} is not one of {', '.join(DECODERS)}")
    from av.codec.hwaccel import HWAccel

    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore",
                            hwaccel=HWAccel(decode, allow_software_fallback=True))
    except (av.error.FileNotFoundError, FileNotFoundError):
        raise MediaNotFoundError(f"{path}: no such file") from None
    except Exception as exc:  # PermissionError (no device node), av errors (no driver), ...: decode on the CPU
        why = f"{decode} decoding unavailable ({type(exc).__name__}: {_why(exc) or 'no reason given'})"
    else:
        video = container.streams.video
        if not video or video[0].codec_context.is_hwaccel:
            return container, ""
        # the device opened, but it has no decoder for this codec: PyAV decodes in software
        why = f"{decode} decoding unavailable (no {decode} decoder for {video[0].codec_context.name})"
        container.close()
    log.info("%s: %s; decoding on the CPU", path, why)
    return _open(path), why


class Reader:
    """Decode a range of frames by global index, upright RGB, threaded decode.

    Use as a context manager. Seeks to the last keyframe at or before the range and decodes forward,
    so any range decodes to exactly the frames a full pass would give.

    ``decode="cuda"`` decodes on the GPU (NVDEC) where it opens, else on the CPU, with the reason in
    :attr:`decode_note`. Frames come back to system memory in the device's layout (NV12, P010) and are
    rearranged to the stream's own format (planar 4:2:0): an exact copy of the samples, so every path after
    the reader (RGB, pass-through, table lookups) sees the frames a software decode gives.
    """

    def __init__(self, info: VideoInfo, decode: str = "cpu") -> None:
        self.info = info
        self._index = {p: i for i, p in enumerate(info.pts)}
        self._container, self.decode_note = _open_decoding(Path(info.path), decode)
        self.decode = decode if not self.decode_note else "cpu"
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        self._reformatter = VideoReformatter()  # one swscale context for the stream, not one per frame

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _seek_pts(self, start: int) -> int | None:
        """The pts of the last keyframe at or before frame ``start`` (None: decode from the top)."""
        target = self.info.pts[start]
        keys = [k for k in self.info.keyframes if k <= target]
        return keys[-1] if keys and start > 0 else None

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        """Yield frames ``start <= index < stop`` in order; raises RenderError if any are missing."""
        for idx, frame in self.decoded(start, stop):
            yield Frame(self.to_rgb(frame), idx, frame.pts, self.info.time_base, self.info.durations[idx])

    def decoded(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Like :meth:`frames` but yields (index, the decoder's own frame), for pass-through copies."""
        stop = self.info.frame_count if stop is None else stop
        if not 0 <= start <= stop <= self.info.frame_count:
            raise ValueError(f"frame range {start}..{stop} outside 0..{self.info.frame_count}")
        if start == stop:
            return
        try:
            yield from self._range(self._seek_pts(start), start, stop)
        except _SeekMissed:  # the demuxer landed past our keyframe: decode from the top instead
            yield from self._range(None, start, stop)

    def passthrough_ok(self, pix_fmt: str) -> bool:
        """Whether decoded frames can go to an encoder of ``pix_fmt`` untouched (no RGB round trip)."""
        i = self.info
        return i.rotation == 0 and i.pix_fmt == pix_fmt and i.width % 2 == 0 and i.height % 2 == 0

    def _range(self, seek_pts: int | None, start: int, stop: int) -> Iterator[tuple[int, av.VideoFrame]]:
        want = start
        for frame in self._decode_from(seek_pts):
            idx = self._index.get(frame.pts)
            if idx is None or idx < want:
                continue
            if idx > want:
                if want == start and seek_pts is not None:
                    raise _SeekMissed
                raise RenderError(f"{self.info.path}: frame {want} did not decode (damaged input?)")
            if frame.format.name != self.info.pix_fmt and self.decode != "cpu":  # NV12/P010 from the device
                frame = _as_stream_format(frame, self.info.pix_fmt)
            yield idx, frame
            want += 1
            if want == stop:
                return
        raise RenderError(f"{self.info.path}: only {want - start} of {stop - start} frames from frame {start} "
                          "decoded (damaged input?)")

    def _decode_from(self, seek_pts: int | None) -> Iterator[av.VideoFrame]:
        self._container.seek(seek_pts if seek_pts is not None else 0, stream=self._stream, backward=True,
                             any_frame=False)
        try:
            yield from self._container.decode(self._stream)
        except av.error.FFmpegError as exc:
            raise RenderError(f"{self.info.path}: decoding failed ({_why(exc)})") from None

    def to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame (:meth:`decoded`) as the upright (H, W, 3) uint8 RGB :meth:`frames` gives."""
        return rotate_upright(av_to_rgb(frame, self.info.color, self._reformatter), self.info.rotation)

    def rgbx_ok(self) -> bool:
        """Whether :meth:`to_rgbx` gives exactly the R, G, B of :meth:`frames`: for 8-bit sources (checked
        for 4:2:0, 4:2:2, 4:4:4, limited and full range). Deeper ones are dithered differently (+-5)."""
        return self.info.bit_depth == 8

    def to_rgbx(self, frame: av.VideoFrame) -> np.ndarray:
        """A decoded frame as upright (H, W, 4) uint8 pixels, R, G, B and a byte to ignore (table lookups)."""
        return rotate_upright(av_to_rgbx(frame, self.info.color, self._reformatter), self.info.rotation)

    def frame_at(self, seconds: float) -> Frame:
        """The frame shown at ``seconds`` (the last one starting at or before it)."""
        t = Fraction(seconds).limit_denominator(1_000_000) / self.info.time_base + self.info.pts[0]
        idx = int(np.searchsorted(np.asarray(self.info.pts), t, side="right")) - 1
        idx = min(max(idx, 0), self.info.frame_count - 1)
        return next(self.frames(idx, idx + 1))


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


def count_frames(path: str | Path) -> int:
    """Video packets in a file we wrote (one per frame): a cheap check that a chunk is complete."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.error.FFmpegError, IndexError):
        return -1
