"""What the studio runs on: NVIDIA GPUs (NVML), which encoders really open, CPU, RAM and free disk.

Read-only and best effort. A machine without an NVIDIA GPU, driver or ``nvidia-ml-py`` (import name
``pynvml``) is the normal CPU case: it reports ``gpus == ()`` with a one-line note, raises nothing and
writes nothing to stderr. Encoder capability is found by trial, because FFmpeg lists ``h264_nvenc`` in
builds that have no GPU to run it: each codec is opened and fed two tiny frames, in memory.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.logging

TEMP_WARN_C = 80.0  # above this a GPU is throttling or about to; renders slow down
NVENC_CODECS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")
CPU_CODECS = ("libx264", "libx265")
# The CPU encoder a preset falls back to when its NVENC family does not open (no AV1 encoder is bundled).
FALLBACK = {"h264": "libx264", "hevc": "libx265", "av1": "libx265"}
_TRIAL_SIZE = 256  # NVENC refuses very small frames (HEVC needs >= 129x33); 256x256 opens everywhere
_TRIAL_OPTIONS = {"libx265": {"x265-params": "log-level=none"}}  # x265 prints its banner to fd 2 otherwise


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML sees it. Memory in bytes; ``None`` where the driver does not report a value."""

    index: int
    name: str
    memory_total: int
    memory_free: int
    temperature_c: float | None
    utilisation_pct: float | None

    @property
    def memory_used(self) -> int:
        return self.memory_total - self.memory_free


@dataclass(frozen=True)
class EncoderProbe:
    """Whether ``codec`` opened and encoded at ``bit_depth`` (8 or 10) here; ``reason`` says why not."""

    codec: str
    bit_depth: int
    ok: bool
    reason: str = ""
    fallback: str | None = None  # the CPU encoder used instead when an NVENC codec does not open


@dataclass(frozen=True)
class HardwareReport:
    """The whole picture. Bytes for memory and disk; ``gpu_note`` says why ``gpus`` is empty."""

    gpus: tuple[GpuInfo, ...]
    gpu_note: str
    encoders: tuple[EncoderProbe, ...]
    recommendations: tuple[tuple[str, str, str], ...]  # (preset, codec, reason)
    nvdec: str | None  # None: H.264 decodes on the GPU here (``--decode cuda``); else why not ("" not checked)
    cpu_count: int
    ram_total: int | None
    ram_available: int | None
    disk_path: str
    disk_free: int | None
    warnings: tuple[str, ...]

    def encoder(self, codec: str, bit_depth: int = 8) -> EncoderProbe | None:
        return next((e for e in self.encoders if e.codec == codec and e.bit_depth == bit_depth), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def lines(self) -> list[str]:
        """Human-readable lines, one fact each (the CLI's ``hardware`` output)."""
        out = [f"GPU {g.index}: {g.name}, {_gib(g.memory_free)} free of {_gib(g.memory_total)}, "
               f"{_maybe(g.temperature_c, '{:.0f} C')}, {_maybe(g.utilisation_pct, '{:.0f}% busy')}"
               for g in self.gpus] or [f"GPU: {self.gpu_note}"]
        for e in self.encoders:
            state = "ok" if e.ok else f"no ({e.reason})" + (f" -> {e.fallback}" if e.fallback else "")
            out.append(f"encoder {e.codec} {e.bit_depth}-bit: {state}")
        if self.nvdec != "":
            out.append("decoder cuda (NVDEC, --decode cuda): " + ("ok" if self.nvdec is None else
                                                                 f"no ({self.nvdec}) -> the CPU decodes"))
        out += [f"preset {name}: {codec} ({why})" for name, codec, why in self.recommendations]
        out.append(f"CPU cores: {self.cpu_count}")
        out.append(f"RAM: {_gib(self.ram_available)} available of {_gib(self.ram_total)}")
        out.append(f"disk: {_gib(self.disk_free)} free at {self.disk_path}")
        out += [f"warning: {w}" for w in self.warnings]
        return out


def _gib(n: int | None) -> str:
    return "? GiB" if n is None else f"{n / 2**30:.1f} GiB"


def _maybe(value: float | None, fmt: str) -> str:
    return "?" if value is None else fmt.format(value)


# ---------------------------------------------------------------------------------------------------- GPUs (NVML)

def _nvml():
    """The ``pynvml`` module, or None. Imported quietly: the old ``pynvml`` wrapper warns on import."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pynvml
        except ImportError:
            return None
    return pynvml


def _optional(call, *args) -> float | None:
    try:
        return float(call(*args))
    except Exception:  # NVMLError_NotSupported on many boards: the value is simply not known
        return None


def probe_gpus() -> tuple[tuple[GpuInfo, ...], str]:
    """NVIDIA GPUs seen by NVML and, when there are none, a one-line note saying why. Never raises."""
    nvml = _nvml()
    if nvml is None:
        return (), "no NVIDIA GPU (nvidia-ml-py is not installed: CPU build)"
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...: no usable GPU here
        return (), f"no NVIDIA GPU ({str(exc) or type(exc).__name__})"
    try:
        found = []
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(h)
            mem = nvml.nvmlDeviceGetMemoryInfo(h)
            temp = _optional(nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU)
            util = _optional(lambda h=h: nvml.nvmlDeviceGetUtilizationRates(h).gpu)
            found.append(GpuInfo(i, name.decode() if isinstance(name, bytes) else str(name),
                                 int(mem.total), int(mem.free), temp, util))
        return tuple(found), "" if found else "no NVIDIA GPU (NVML sees none)"
    except Exception as exc:  # a driver that fails mid-query: report no GPU rather than break the page
        return (), f"no NVIDIA GPU ({str(exc) or type(exc).__name__})"
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            pass


def gpu_warnings(gpus: tuple[GpuInfo, ...]) -> list[str]:
    return [f"GPU {g.index} ({g.name}) is at {g.temperature_c:.0f} C, above {TEMP_WARN_C:.0f} C: check cooling"
            for g in gpus if g.temperature_c is not None and g.temperature_c > TEMP_WARN_C]


# ---------------------------------------------------------------------------------------------------- encoders

def trial_pix_fmt(codec: str, bit_depth: int) -> str:
    """The pixel format a trial uses: NVENC takes 10-bit as ``p010le``, the x26x encoders as planar."""
    if bit_depth == 8:
        return "yuv420p"
    return "p010le" if codec.endswith("_nvenc") else "yuv420p10le"


@functools.cache
def encoder_opens(codec: str, pix_fmt: str = "yuv420p") -> str | None:
    """None when ``codec`` really opens and encodes here (two 256x256 frames, in memory), else a one-line
    reason why not. Cached per process: the answer cannot change while the driver stays loaded.

    FFmpeg's own log is captured (never printed) for the duration, so the reason carries its last error
    line, e.g. ``... last error log: [h264_nvenc] Cannot load libcuda.so.1``.
    """
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture():
            _trial_encode(codec, pix_fmt)
        return None
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    finally:
        av.logging.set_level(level)


def _trial_encode(codec: str, pix_fmt: str) -> None:
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = _TRIAL_SIZE, _TRIAL_SIZE, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.options = dict(_TRIAL_OPTIONS.get(codec, {}))
    ctx.open()
    for pts in range(2):
        frame = av.VideoFrame(_TRIAL_SIZE, _TRIAL_SIZE, pix_fmt)
        frame.pts = pts
        ctx.encode(frame)
    ctx.encode(None)  # flush: some encoders only fail once they really produce a packet


# ---------------------------------------------------------------------------------------------------- decoders


@functools.cache
def decoder_opens(device: str = "cuda") -> str | None:
    """None when ``device`` (PyAV's hardware device type; NVDEC is "cuda") really decodes H.264 here (a
    two-frame clip made in memory, no software fallback allowed), else a one-line reason why not. Cached per
    process, quiet like :func:`encoder_opens`."""
    import io

    from av.codec.hwaccel import HWAccel

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:  # the trial clip, encoded on the CPU
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = _TRIAL_SIZE, _TRIAL_SIZE, "yuv420p"
        for pts in range(2):
            frame = av.VideoFrame(_TRIAL_SIZE, _TRIAL_SIZE, "yuv420p")
            frame.pts = pts
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buf.seek(0)
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(), av.open(buf, hwaccel=HWAccel(device, allow_software_fallback=False)) as c:
            if not c.streams.video[0].codec_context.is_hwaccel:
                return f"no {device} decoder for h264 in this FFmpeg build"
            next(c.decode(video=0))
        return None
    except (av.error.FFmpegError, ValueError, OSError, StopIteration) as exc:
        return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    finally:
        av.logging.set_level(level)


def _family(codec: str) -> str:
    return "hevc" if codec.startswith(("hevc", "libx265")) else "av1" if codec.startswith("av1") else "h264"


def probe_encoders() -> tuple[EncoderProbe, ...]:
    """Every NVENC codec and its CPU fallbacks at 8 and 10 bit (trial opens cached per process)."""
    out = []
    for codec in NVENC_CODECS + CPU_CODECS:
        for bits in (8, 10):
            why = encoder_opens(codec, trial_pix_fmt(codec, bits))
            fallback = FALLBACK[_family(codec)] if why is not None and codec.endswith("_nvenc") else None
            out.append(EncoderProbe(codec, bits, why is None, why or "", fallback))
    return tuple(out)


def recommend_codec(preset_name: str) -> tuple[str, str]:
    """The codec to render ``preset_name`` with on this machine, and why.

    NVENC of the preset's family (H.264, HEVC, AV1) when it opens at the preset's bit depth, else the
    CPU encoder of that family. Lossless presets (``qp: 0``) and non-H.26x codecs (``ffv1``) keep their
    codec: NVENC's constant-QP mode is not lossless. Raises :class:`ConfigError` for an unknown preset.
    """
    from .presets import load_preset

    enc = load_preset(preset_name).encoder
    if enc.codec not in ("auto", *NVENC_CODECS, *CPU_CODECS):
        return enc.codec, f"{enc.codec} has no NVENC equivalent"
    if enc.qp == 0:
        return enc.codec if enc.codec in CPU_CODECS else "libx264", "lossless (qp 0): NVENC constant-QP is not lossless"
    bits = 10 if "10" in enc.pix_fmt else 8
    family = _family(enc.codec)
    nvenc, cpu = f"{family}_nvenc", FALLBACK[family]
    why = encoder_opens(nvenc, trial_pix_fmt(nvenc, bits))
    if why is None:
        return nvenc, f"{nvenc} opens here at {bits}-bit"
    return cpu, f"{nvenc} {bits}-bit does not open ({why})"


# ---------------------------------------------------------------------------------------------------- the report

def ram_bytes() -> tuple[int | None, int | None]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo; (None, None) where it cannot be read."""
    try:
        rows = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        return int(rows["MemTotal"].split()[0]) * 1024, int(rows["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError, IndexError):
        return None, None


def _recommendations() -> tuple[tuple[str, str, str], ...]:
    from .errors import StudioError
    from .presets import list_presets

    out = []
    for name in list_presets():
        try:
            out.append((name, *recommend_codec(name)))
        except StudioError as exc:  # a broken custom preset must not hide the hardware page
            out.append((name, "?", str(exc).splitlines()[0]))
    return tuple(out)


def report(check_encoders: bool = True) -> HardwareReport:
    """Everything above in one value. ``check_encoders=False`` skips the trial encodes and decode (and
    presets)."""
    from .disk import free_bytes
    from .paths import studio_home

    gpus, note = probe_gpus()
    encoders = probe_encoders() if check_encoders else ()
    total, available = ram_bytes()
    home = studio_home()
    disk_at = home if home.exists() else Path.home()
    try:
        disk = free_bytes(disk_at)
    except OSError:
        disk = None
    return HardwareReport(gpus=gpus, gpu_note=note, encoders=encoders,
                          recommendations=_recommendations() if check_encoders else (),
                          nvdec=decoder_opens("cuda") if check_encoders else "",
                          cpu_count=os.cpu_count() or 1, ram_total=total, ram_available=available,
                          disk_path=str(disk_at), disk_free=disk, warnings=tuple(gpu_warnings(gpus)))
