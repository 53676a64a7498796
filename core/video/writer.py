"""Encoding frames that keep their timestamps: H.264/H.265 (x264/x265, NVENC when it really opens), FFV1,
and the delivery codecs: ProRes, DNxHR, PNG and TIFF frames.

Frames enter as they left the reader (upright RGB uint8 with their pts): the output keeps the input's
timestamps and time base, so frame count, fps, VFR timing and duration match. :data:`CODECS` says, per
encoder, which containers it is delivered in, its pixel format and profiles; the output path is checked
against it before a render starts (:func:`core.render.spec.check_output`), what only the probed input can
tell (an MXF frame rate, a DNxHR minimum size) when a chunk starts (:func:`check_delivery`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import ConfigError
from core.hardware import encoder_opens
from core.presets import EncoderConfig

from .frames import ColorTags, pad_even, rgb_to_av, rgbx_to_av
from .probe import OUTPUT_FORMATS, VideoInfo

log = logging.getLogger(__name__)

#: Output files by extension: the H.26x containers, and MXF for DNxHR.
CONTAINERS = {**OUTPUT_FORMATS, ".mxf": "mxf"}
#: What :attr:`Codec.containers` says for an image sequence: a folder of frame files, not a container.
FOLDER = "/"
#: Image-sequence encoders and the extension of their frame files (``frame_000000.png``, ...).
SEQUENCES = {"png": ".png", "tiff": ".tif"}


@dataclass(frozen=True)
class Codec:
    """What one encoder delivers. ``containers``: the output extensions it goes in (None: whichever of
    :data:`CONTAINERS` FFmpeg's muxer takes it in; :data:`FOLDER`: an image sequence); ``pix_fmt``: its
    pixel format when none is set; ``profiles``: profile name -> the pixel format it is made in, ``profile``
    the default one ("" lets the encoder choose, from the pixel format)."""

    name: str
    containers: tuple[str, ...] | None
    pix_fmt: str
    profiles: Mapping[str, str] = field(default_factory=dict)
    profile: str = ""


_PRORES_422 = ("proxy", "lt", "standard", "hq")
#: The encoders the studio knows. Editors take ProRes in .mov and DNxHR in .mxf (Avid) or .mov; both are
#: intra-only, so chunks join by remux. Another encoder FFmpeg has is used as it is, in yuv420p.
CODECS: dict[str, Codec] = {
    "libx264": Codec("H.264", None, "yuv420p"),
    "h264_nvenc": Codec("H.264", None, "yuv420p"),
    "libx265": Codec("H.265", None, "yuv420p", {"main": "yuv420p", "main10": "yuv420p10le"}),
    "hevc_nvenc": Codec("H.265", None, "yuv420p"),
    "ffv1": Codec("FFV1", (".mkv", ".mp4"), "bgr0"),  # RGB: what the stages produced, bit for bit
    "prores_ks": Codec("ProRes", (".mov",), "yuv422p10le",
                       {**dict.fromkeys(_PRORES_422, "yuv422p10le"), "4444": "yuv444p10le", "4444xq": "yuv444p10le"},
                       "hq"),
    "dnxhd": Codec("DNxHR", (".mxf", ".mov"), "yuv422p",
                   {"dnxhr_lb": "yuv422p", "dnxhr_sq": "yuv422p", "dnxhr_hq": "yuv422p", "dnxhr_hqx": "yuv422p10le",
                    "dnxhr_444": "yuv444p10le"}, "dnxhr_hq"),
    "png": Codec("PNG", (FOLDER,), "rgb24"),
    "tiff": Codec("TIFF", (FOLDER,), "rgb24"),
}


#: the delivery formats a page offers: label -> (the ``--set`` pairs, the output's extension; "" = a folder)
DELIVERIES: dict[str, tuple[dict[str, str], str]] = {
    "H.264 (.mp4)": ({}, ".mp4"),
    "H.265 10-bit (.mp4)": ({"encoder.codec": "libx265", "encoder.pix_fmt": "yuv420p10le"}, ".mp4"),
    "ProRes 422 HQ (.mov)": ({"encoder.codec": "prores_ks"}, ".mov"),
    "DNxHR HQ (.mov)": ({"encoder.codec": "dnxhd"}, ".mov"),
    "DNxHR HQ (.mxf)": ({"encoder.codec": "dnxhd"}, ".mxf"),
    "PNG image sequence (folder)": ({"encoder.codec": "png"}, ""),
    "TIFF image sequence (folder)": ({"encoder.codec": "tiff"}, ""),
}


def codec_rule(codec: str) -> Codec:
    """The :class:`Codec` of encoder ``codec``; for one the studio does not list, FFmpeg's own container
    rules and yuv420p. ConfigError when this FFmpeg has no such encoder."""
    if codec in CODECS:
        return CODECS[codec]
    try:
        av.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise ConfigError(f"encoder.codec={codec}: no such encoder in this FFmpeg "
                          f"(choose from {', '.join(CODECS)} or auto)") from None
    return Codec(codec, None, "yuv420p")


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


def pixel_format(codec: str, cfg: EncoderConfig) -> tuple[str, str]:
    """``(pix_fmt, profile)`` that ``codec`` encodes with for ``cfg``: the ones set, else the codec's (a
    profile's own pixel format; H.265 main10 for a 10-bit pix_fmt). ConfigError naming the key when the
    encoder has no such pixel format or profile, or the two disagree."""
    rule = codec_rule(codec)
    profile = cfg.profile
    if profile and profile not in rule.profiles:
        known = f"its profiles are {', '.join(rule.profiles)}" if rule.profiles else "it has no profiles to choose"
        raise ConfigError(f"encoder.profile={profile}: not a {codec} profile ({known})")
    pix_fmt = cfg.pix_fmt or rule.profiles.get(profile or rule.profile) or rule.pix_fmt
    formats = [f.name for f in av.Codec(codec, "w").video_formats or ()]
    if formats and pix_fmt not in formats:
        raise ConfigError(f"encoder.pix_fmt={pix_fmt}: {codec} encodes {', '.join(formats)}")
    if not profile:  # the default profile when it is made in this pixel format, else the first one that is
        fits = [p for p, f in rule.profiles.items() if f == pix_fmt]
        profile = rule.profile if rule.profile in fits else fits[0] if fits else ""
    elif rule.profiles[profile] != pix_fmt:
        raise ConfigError(f"encoder.pix_fmt={pix_fmt}: {rule.name} profile {profile} is made in "
                          f"{rule.profiles[profile]}; leave encoder.pix_fmt empty or choose another profile")
    return pix_fmt, profile


def chunk_suffix(output: str | Path) -> str:
    """The container of a render's chunk files: the output's own, except for MXF and image sequences, whose
    chunks are .mov files (mov keeps the source time base and any codec; the stitch renumbers the frames on
    MXF's frame grid, or writes each PNG/TIFF packet, a whole image file, as a frame file)."""
    suffix = Path(output).suffix.lower()
    return suffix if suffix in OUTPUT_FORMATS else ".mov"


def check_delivery(output: str | Path, cfg: EncoderConfig, info: VideoInfo) -> None:
    """What the output path and settings cannot tell before the input is probed: that the encoder takes
    frames of this size (DNxHR: at least 256x120) and, for MXF, that the frames lie on a frame rate MXF
    has (constant: MXF stores no timestamps). ConfigError naming the output and what to use instead."""
    codec = resolve_codec(cfg)
    rule = codec_rule(codec)
    pix_fmt, _ = pixel_format(codec, cfg)
    pad = _pads(pix_fmt)
    width, height = (info.width + info.width % 2, info.height + info.height % 2) if pad else (info.width, info.height)
    if rule.containers is not None:
        why = _refused_size(codec, width, height, pix_fmt, tuple(encoder_options(codec, cfg).items()))
        if why:
            raise ConfigError(f"{output}: {codec} cannot encode this {width}x{height} video ({why})")
    if CONTAINERS.get(Path(output).suffix.lower()) != "mxf":
        return
    if not on_frame_grid(info):
        raise ConfigError(f"{output}: MXF holds constant-frame-rate video only, and this input's frame times vary "
                          f"(VFR, {float(info.fps):.3f} fps on average); deliver it in .mov, which keeps them")
    if not _mxf_rate(info.fps):
        raise ConfigError(f"{output}: MXF has no {float(info.fps):.3f} fps frame rate (it takes 23.976, 24, 25, "
                          "29.97, 30, 50, 59.94, 60 and a few more); deliver this video in .mov")


def on_frame_grid(info: VideoInfo) -> bool:
    """Whether every frame's time is its index at ``info.fps`` from the first one (constant frame rate)."""
    if not info.pts:
        return True
    times = (np.asarray(info.pts, dtype=np.float64) - info.pts[0]) * float(info.time_base * info.fps)
    return bool(np.all(np.abs(times - np.arange(len(times))) < 0.01))


@functools.cache
def _mxf_rate(fps: Fraction) -> bool:
    """Whether FFmpeg's MXF muxer writes ``fps`` (its own list of edit rates, asked with a header in memory)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # its refusal is captured, never printed
    out = av.open(io.BytesIO(), mode="w", format="mxf")
    try:
        with av.logging.Capture():
            s = out.add_stream("dnxhd", rate=fps)
            s.width, s.height, s.pix_fmt, s.time_base = 256, 144, "yuv422p", 1 / fps
            s.options = {"profile": "dnxhr_lb"}
            out.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError):
        return False
    finally:
        with contextlib.suppress(av.error.FFmpegError), av.logging.Capture():
            out.close()  # a file with no frames has no valid trailer: that refusal says nothing
        av.logging.set_level(level)


@functools.cache
def _refused_size(codec: str, width: int, height: int, pix_fmt: str, options: tuple[tuple[str, str], ...]) -> str:
    """"" when ``codec`` opens at this size, else the encoder's last log line (why it refused)."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # captured, never printed
    try:
        with av.logging.Capture() as logs:
            cc = av.CodecContext.create(codec, "w")
            cc.width, cc.height, cc.pix_fmt, cc.time_base = width, height, pix_fmt, Fraction(1, 25)
            cc.options = dict(options)
            cc.open()
        return ""
    except (av.error.FFmpegError, ValueError) as exc:
        lines = [msg.strip() for _, _, msg in logs if msg.strip()]
        return lines[-1] if lines else str(exc)
    finally:
        av.logging.set_level(level)


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
    ProRes and DNxHR take their profile only: the profile is their quality.
    """
    if codec in ("libx264", "libx265"):
        opts = {"preset": cfg.preset}
        opts.update({"qp": str(cfg.qp)} if cfg.qp is not None else {"crf": str(cfg.crf)})
        if codec == "libx265":
            opts["x265-params"] = "log-level=error"
            profile = pixel_format(codec, cfg)[1]
            if profile:
                opts["profile"] = profile
        elif _cpu_has_avx512():
            opts["x264-params"] = "asm=AVX2"
        return opts
    if codec.endswith("_nvenc"):
        return {"preset": "p4", "rc": "constqp" if cfg.qp is not None else "vbr",
                "cq" if cfg.qp is None else "qp": str(cfg.qp if cfg.qp is not None else cfg.crf)}
    profile = pixel_format(codec, cfg)[1] if codec in ("prores_ks", "dnxhd") else ""
    return {"profile": profile} if profile else {}


#: Encoders that write each frame's own colour tags into its header (prores_ks reads the frame, not the
#: stream): their frames carry the stream's tags, or a .mov's ProRes would say "unknown" transfer.
_FRAME_TAGGED = frozenset({"prores_ks"})


def _pads(pix_fmt: str) -> bool:
    """Whether frames are padded to even sizes: subsampled chroma (4:2:0, 4:2:2) needs them."""
    return any(s in pix_fmt for s in ("420", "422", "nv12"))


class Writer:
    """Encode RGB frames into one file, keeping each frame's pts in the source time base.

    A context manager: the encoder is flushed and the file closed on every path. Odd sizes are padded
    to even (4:2:0 needs it) by repeating the last row/column.
    """

    def __init__(self, path: str | Path, *, width: int, height: int, fps: Fraction, time_base: Fraction,
                 color: ColorTags, encoder: EncoderConfig) -> None:
        path = Path(path)
        fmt = CONTAINERS.get(path.suffix.lower())
        self.codec = resolve_codec(encoder)
        self.color = color
        self.pix_fmt = pixel_format(self.codec, encoder)[0]
        self._pad = _pads(self.pix_fmt)
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
            # frame files carry no primaries or transfer tag (PNG would write a gAMA chunk for BT.709's curve,
            # which viewers then apply): untagged RGB is read as sRGB, which is how video RGB is shown
            if self.codec not in SEQUENCES:
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
        if self.codec in _FRAME_TAGGED:
            cc = self._stream.codec_context
            frame.colorspace, frame.color_range = cc.colorspace, cc.color_range
            frame.color_primaries, frame.color_trc = cc.color_primaries, cc.color_trc
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
