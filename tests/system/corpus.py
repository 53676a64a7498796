"""A corpus of hostile and odd input files, each with the outcome issue 16 promises for it.

Everything is generated here (PyAV where it can, the ffmpeg CLI for what PyAV cannot mux: H.264 stream
copies into AVI, Vorbis, multi-track MKV with SRT and chapters); nothing is downloaded. Files are tiny
(64x48..160x120, 1-3 s) so the whole corpus renders in a few minutes on two cores.

Outcomes:
- ``ok``: must render, exit 0, frame-exact, every stream kept.
- ``refuse``: must exit 2 with one line on stderr, no traceback, no output.
- ``decodable``: damaged: exit 0 with the frames FFmpeg decodes (and the loss reported), or exit 2 when
  nothing decodes. Which one is decided by decoding the file, not by guessing.
- ``either``: a clean refusal (exit 2, one line) or a frame-exact render (tiny frames, still images).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from core.video.synthetic import ClipSpec, make_clip, scene_frame

FFMPEG = shutil.which("ffmpeg")
SRT = (b"1\n00:00:00,100 --> 00:00:00,600\nHello\n\n2\n00:00:00,800 --> 00:00:01,500\nWorld\n\n")
CHAPTERS = (b";FFMETADATA1\ntitle=Corpus\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=1000\ntitle=One\n\n"
            b"[CHAPTER]\nTIMEBASE=1/1000\nSTART=1000\nEND=2000\ntitle=Two\n")
BASE = ClipSpec(width=96, height=64, frames=50, gop=12, audio=True)  # 2 s at 25 fps


@dataclass(frozen=True)
class Case:
    """One corpus entry: where the file is, what must happen, and how many frames its source had.

    ``frames``: frames the file was made with (None when it has no meaning, e.g. a text file), used to
    demand a "lost" report when fewer decode. ``knows``: what the container states of its length, so what
    a reader can say of the loss: "count" (mp4, mov index every frame: the loss exactly), "duration"
    (mkv, avi: that frames are missing), "" (MPEG-TS, raw streams: nothing). ``output``: the render's output
    name (its extension picks the container); ``commands``: what else runs on it besides
    ``render --style none``.
    """

    name: str
    path: Path
    expect: str
    frames: int | None = None
    knows: str = ""
    output: str = "out.mp4"
    commands: tuple[str, ...] = ("probe",)


class Sources:
    """Clean source clips, made once and shared by the cases derived from them (copies, cuts, flips)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "src").mkdir(parents=True, exist_ok=True)
        self._made: dict[str, Path] = {}

    def clip(self, name: str, spec: ClipSpec = BASE) -> Path:
        if name not in self._made:
            self._made[name] = make_clip(self.root / "src" / name, spec)
        return self._made[name]

    @property
    def mp4(self) -> Path:
        return self.clip("base.mp4")

    @property
    def faststart(self) -> Path:
        if "faststart" not in self._made:
            self._made["faststart"] = ffmpeg("-i", self.mp4, "-c", "copy", "-movflags", "+faststart",
                                             out=self.root / "src" / "faststart.mp4")
        return self._made["faststart"]

    @property
    def mkv(self) -> Path:
        return self.clip("base.mkv")

    @property
    def ts(self) -> Path:
        return self.clip("base.ts")

    @property
    def avi(self) -> Path:
        return self.clip("base.avi", ClipSpec(width=96, height=64, frames=50, gop=12, codec="mpeg4"))


def need_ffmpeg() -> str:
    """The CLI's path; raises ``LookupError`` (the test skips with its reason) when it is not installed."""
    if FFMPEG is None:
        raise LookupError("the ffmpeg CLI is not installed (PyAV cannot make this file)")
    return FFMPEG


def ffmpeg(*args: str | Path, out: Path) -> Path:
    """Run ``ffmpeg -v error -y ARGS OUT``; raise with its stderr when it fails."""
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [need_ffmpeg(), "-v", "error", "-nostdin", "-y", *map(str, args), str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"corpus: {' '.join(cmd)} failed: {res.stderr.strip()}")
    return out


def truncated(src: Path, dst: Path, fraction: float) -> Path:
    dst.write_bytes(src.read_bytes()[:int(src.stat().st_size * fraction)])
    return dst


def header_only(src: Path, dst: Path) -> Path:
    """The container's header and nothing of the media data: mp4 up to the mdat payload, mkv up to its first
    Cluster, MPEG-TS its first three packets (PAT, PMT and one more)."""
    data = src.read_bytes()
    if src.suffix == ".mp4":
        end = data.find(b"mdat") + 4
    elif src.suffix == ".mkv":
        end = data.find(bytes.fromhex("1F43B675"))
    else:
        end = 3 * 188
    dst.write_bytes(data[:end])
    return dst


def bit_flips(src: Path, dst: Path, seed: int, count: int = 24) -> Path:
    """Flip ``count`` seeded bits in the middle fifth of the file (media data, not the header or index)."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    for pos in rng.integers(int(len(data) * 0.4), int(len(data) * 0.6), size=count):
        data[pos] ^= 1 << int(rng.integers(0, 8))
    dst.write_bytes(bytes(data))
    return dst


def zeroed_media(src: Path, dst: Path) -> Path:
    """An mp4 whose whole media payload is zeros: the index is intact, nothing decodes."""
    data = bytearray(src.read_bytes())
    i = data.find(b"mdat") + 4
    j = data.find(b"moov") - 4 if data.find(b"moov") > i else len(data)
    data[i:j] = bytes(j - i)
    dst.write_bytes(bytes(data))
    return dst


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but whose data is a few bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b"")


def duplicate_stamps(dst: Path) -> Path:
    """MJPEG in MKV where frames 10-12 repeat frame 9's timestamp (a muxer bug seen in screen recorders)."""
    spec = ClipSpec(width=80, height=64, frames=25, codec="mjpeg", pix_fmt="yuvj420p")
    src = make_clip(dst.with_suffix(".src.mkv"), spec)
    prev = 0
    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        for n, p in enumerate(q for q in i.demux(i.streams.video[0]) if q.size):
            if 10 <= n <= 12:
                p.pts = p.dts = prev
            prev = p.pts
            p.stream = vs
            o.mux(p)
    src.unlink()
    return dst


def still(dst: Path, ext: str) -> Path:
    """A still image (PNG or JPEG) saved under ``dst``'s name (a user who renamed a photo to .mp4)."""
    ok, buf = cv2.imencode(ext, cv2.cvtColor(scene_frame(ClipSpec(width=96, height=64), 0), cv2.COLOR_RGB2BGR))
    assert ok
    dst.write_bytes(buf.tobytes())
    return dst


def mkv_tracks(s: Sources, dst: Path) -> Path:
    """Three tagged audio tracks, an SRT track and two chapters, as users' MKVs have them."""
    srt = s.root / "src" / "subs.srt"
    meta = s.root / "src" / "chapters.txt"
    srt.write_bytes(SRT)
    meta.write_bytes(CHAPTERS)
    return ffmpeg("-i", s.mp4, "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-f", "lavfi", "-i",
                  "sine=frequency=660:duration=2", "-i", srt, "-i", meta, "-map", "0:v", "-map", "0:a", "-map", "1:a",
                  "-map", "2:a", "-map", "3:s", "-map_metadata", "4", "-map_chapters", "4", "-c:v", "copy",
                  "-c:a", "aac", "-c:s", "srt", "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fra",
                  "-metadata:s:a:1", "title=Commentary", "-metadata:s:a:2", "language=deu",
                  "-metadata:s:s:0", "language=eng", out=dst)


def av_pair(s: Sources, dst: Path, video_s: float, audio_s: float) -> Path:
    """Video of ``video_s`` seconds with an audio track of ``audio_s`` seconds (lengths that disagree)."""
    video = s.clip(f"v{video_s}.mp4", ClipSpec(width=80, height=64, frames=int(25 * video_s), gop=25))
    return ffmpeg("-i", video, "-f", "lavfi", "-i", f"sine=frequency=500:duration={audio_s}", "-map", "0:v",
                  "-map", "1:a", "-c:v", "copy", "-c:a", "aac", out=dst)


Builder = Callable[[Sources, Path], Case]


def knows(path: Path) -> str:
    """What ``path``'s container states of its length (see ``Case.knows``)."""
    # AVI's header counts its time base's ticks, not frames (an mp4 copied in at 25 fps states 50 per second),
    # so a reader knows that frames are missing there, not how many
    return {".mp4": "count", ".mov": "count", ".avi": "duration", ".mkv": "duration"}.get(path.suffix, "")


def _clip(spec: ClipSpec, expect: str = "ok", ext: str = ".mp4", **kw: object) -> Builder:
    def build(s: Sources, dst: Path) -> Case:
        path = make_clip(dst.with_suffix(ext), spec)
        return Case(dst.name, path, expect, spec.frames, knows(path), **kw)  # type: ignore[arg-type]
    return build


def _ff(make: Callable[[Sources, Path], Path], ext: str, frames: int | None, expect: str = "ok",
        **kw: object) -> Builder:
    def build(s: Sources, dst: Path) -> Case:
        path = make(s, dst.with_suffix(ext))
        return Case(dst.name, path, expect, frames, knows(path), **kw)  # type: ignore[arg-type]
    return build


def _damage(source: str, how: Callable[[Path, Path], Path]) -> Builder:
    def build(s: Sources, dst: Path) -> Case:
        src: Path = getattr(s, source)
        path = how(src, dst.with_suffix(src.suffix))
        return Case(dst.name, path, "decodable", BASE.frames, knows(path))
    return build


def _bytes(data: bytes, ext: str, expect: str = "refuse", frames: int | None = None) -> Builder:
    def build(s: Sources, dst: Path) -> Case:
        path = dst.with_suffix(ext)
        path.write_bytes(data)
        return Case(dst.name, path, expect, frames)
    return build


def _fault(make: Callable[[Sources, Path], tuple[Path, str]]) -> Builder:
    """A fault of the user's paths (not of the file's content): always exit 2 and one line."""
    def build(s: Sources, dst: Path) -> Case:
        path, output = make(s, dst)
        return Case(dst.name, path, "refuse", None, output=output, commands=())
    return build


def _dir_input(s: Sources, dst: Path) -> tuple[Path, str]:
    dst.with_suffix(".mp4").mkdir()
    return dst.with_suffix(".mp4"), "out.mp4"


def _loop_input(s: Sources, dst: Path) -> tuple[Path, str]:
    a, b = dst.with_suffix(".a.mp4"), dst.with_suffix(".b.mp4")
    a.symlink_to(b)
    b.symlink_to(a)
    return a, "out.mp4"


def _out_is_dir(s: Sources, dst: Path) -> tuple[Path, str]:
    dst.mkdir()
    return s.mp4, str(dst)


H264_FF = ("-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p")
SMALL = ClipSpec(width=80, height=64, frames=25, gop=12)

# name -> builder. The names are the tests' ids; most render with ``--style none``, PENCIL also with pencil,
# PREVIEW also through ``preview``.
CASES: dict[str, Builder] = {
    # Containers and codecs users have
    "mp4_h264_aac": _clip(BASE),
    "mp4_faststart": lambda s, d: Case(d.name, s.faststart, "ok", BASE.frames, "count"),
    "mov_h264_aac": _clip(BASE, ext=".mov"),
    "mov_prores_422_10bit": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "prores_ks", "-profile:v", "2",
                                                    "-c:a", "pcm_s16le", out=d), ".mov", BASE.frames),
    "mkv_h264": _clip(BASE, ext=".mkv", output="out.mkv"),
    "mkv_tracks_subs_chapters": _ff(mkv_tracks, ".mkv", BASE.frames, output="out.mkv"),
    "mkv_tracks_into_mp4": _ff(mkv_tracks, ".mkv", BASE.frames),
    "avi_h264_bframes": _ff(lambda s, d: ffmpeg("-i", s.mp4, *H264_FF, "-bf", "3", "-an", out=d), ".avi",
                            BASE.frames),
    "avi_h264_copy_rate_mismatch": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c", "copy", out=d), ".avi", BASE.frames),
    "avi_mpeg4": _clip(ClipSpec(width=96, height=64, frames=50, codec="mpeg4", audio=True), ext=".avi"),
    "avi_mpeg4_bframes": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "mpeg4", "-bf", "2", "-c:a", "pcm_s16le",
                                                 out=d), ".avi", BASE.frames),
    "avi_mjpeg": _clip(ClipSpec(width=96, height=64, frames=50, codec="mjpeg", pix_fmt="yuvj420p"), ext=".avi"),
    "ts_h264_aac": _clip(BASE, ext=".ts"),
    "ts_h264_bframes": _ff(lambda s, d: ffmpeg("-i", s.mp4, *H264_FF, "-bf", "3", "-c:a", "aac", out=d), ".ts",
                           BASE.frames),
    "mpg_mpeg2": _clip(ClipSpec(width=96, height=64, frames=50, codec="mpeg2video"), ext=".mpg"),
    "webm_vp8_vorbis": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "libvpx", "-b:v", "200k", "-c:a", "libvorbis",
                                               out=d), ".webm", BASE.frames, output="out.mkv"),
    "webm_vp9_opus": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "libvpx-vp9", "-b:v", "200k", "-deadline",
                                             "realtime", "-c:a", "libopus", out=d), ".webm", BASE.frames,
                         output="out.mkv"),
    "ogv_theora": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "libtheora", "-an", out=d), ".ogv", BASE.frames),
    "flv_sorenson": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "flv", "-c:a", "aac", out=d), ".flv", BASE.frames),
    "asf_wmv2": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "wmv2", "-an", out=d), ".wmv", BASE.frames),
    # Time: VFR, timestamps missing or repeated, rates that disagree, lengths that disagree
    "mp4_vfr": _clip(ClipSpec(width=96, height=64, frames=36, vfr=True, audio=True)),
    "mkv_vfr": _clip(ClipSpec(width=96, height=64, frames=36, vfr=True), ext=".mkv", output="out.mkv"),
    "raw_h264_no_timestamps": _clip(ClipSpec(width=96, height=64, frames=30), ext=".h264"),
    "raw_h264_bframes": _ff(lambda s, d: ffmpeg("-i", s.mp4, *H264_FF, "-bf", "3", "-an", "-f", "h264", out=d),
                            ".h264", BASE.frames),
    "raw_mpeg4_m4v": _ff(lambda s, d: ffmpeg("-i", s.mp4, "-c:v", "mpeg4", "-an", "-f", "m4v", out=d), ".m4v",
                         BASE.frames),
    "mkv_duplicate_timestamps": _ff(lambda s, d: duplicate_stamps(d), ".mkv", 25, output="out.mkv"),
    "short_audio_long_video": _ff(lambda s, d: av_pair(s, d, 3.0, 0.2), ".mp4", 75),
    "long_audio_short_video": _ff(lambda s, d: av_pair(s, d, 1.0, 3.0), ".mp4", 25),
    "one_frame_mp4": _clip(ClipSpec(width=80, height=64, frames=1, gop=1)),
    "one_frame_avi_mjpeg": _clip(ClipSpec(width=80, height=64, frames=1, codec="mjpeg", pix_fmt="yuvj420p"),
                                 ext=".avi"),
    # Geometry and pixels
    "rotated_90": _clip(ClipSpec(width=96, height=64, frames=20, rotation=90)),
    "rotated_180": _clip(ClipSpec(width=96, height=64, frames=20, rotation=180)),
    "rotated_270": _clip(ClipSpec(width=96, height=64, frames=20, rotation=270, audio=True)),
    "p10_mp4": _clip(ClipSpec(width=96, height=64, frames=20, pix_fmt="yuv420p10le")),
    "p444_mp4": _clip(ClipSpec(width=96, height=64, frames=20, pix_fmt="yuv444p")),
    "odd_size_97x71": _clip(ClipSpec(width=97, height=71, frames=20, pix_fmt="yuv444p")),
    "tiny_2x2": _clip(ClipSpec(width=2, height=2, frames=10, pix_fmt="yuv444p"), "either"),
    "tiny_4x4": _clip(ClipSpec(width=4, height=4, frames=10), "either"),
    "tiny_16x16": _clip(ClipSpec(width=16, height=16, frames=10), "either"),
    "tiny_odd_17x13": _clip(ClipSpec(width=17, height=13, frames=10, pix_fmt="yuv444p"), "either"),
    "thin_8192x64": _clip(ClipSpec(width=8192, height=64, frames=3, gop=3), "either"),
    "wide_8200x16": _clip(ClipSpec(width=8200, height=16, frames=3, gop=3), "refuse"),
    "huge_declared_y4m": _bytes(b"YUV4MPEG2 W16384 H16384 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096), ".y4m"),
    "huge_declared_png_as_mp4": _bytes(png_declaring(16384, 16384), ".mp4"),
    # Not a video at all
    "zero_length": _bytes(b"", ".mp4"),
    "text_as_mp4": _bytes(b"This is not a video.\nIt is a note someone renamed.\n" * 20, ".mp4"),
    "png_still_as_mp4": _ff(lambda s, d: still(d, ".png"), ".mp4", 1, "either"),
    "jpeg_still_as_mp4": _ff(lambda s, d: still(d, ".jpg"), ".mp4", 1, "either"),
    "audio_only_as_mp4": _ff(lambda s, d: ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", out=d),
                             ".mp4", None, "refuse"),
    "audio_only_wav": _ff(lambda s, d: ffmpeg("-f", "lavfi", "-i", "sine=duration=1", out=d), ".wav", None,
                          "refuse"),
    "mp4_media_zeroed": _damage("mp4", zeroed_media),
    # Damage: truncations at several points, header only, bit flips
    **{f"trunc_{src}_{int(f * 100)}": _damage(src, lambda a, b, f=f: truncated(a, b, f))
       for src in ("mp4", "faststart", "mkv", "ts") for f in (0.1, 0.5, 0.9)},
    **{f"header_only_{src}": _damage(src, header_only) for src in ("mp4", "faststart", "mkv", "ts")},
    **{f"bitflips_{src}": _damage(src, lambda a, b, n=n: bit_flips(a, b, seed=16 + n))
       for n, src in enumerate(("mp4", "mkv", "ts", "avi"))},
    # Faults of the user's paths
    "missing_input": _fault(lambda s, d: (d.with_suffix(".mp4"), "out.mp4")),
    "directory_as_input": _fault(_dir_input),
    "symlink_loop_input": _fault(_loop_input),
    "output_is_a_directory": _fault(_out_is_dir),
    "output_unknown_extension": _fault(lambda s, d: (s.mp4, "out.xyz")),
}

PENCIL = ("mp4_h264_aac", "avi_h264_bframes", "ts_h264_aac", "mkv_tracks_subs_chapters", "mp4_vfr", "rotated_90",
          "p10_mp4", "trunc_mp4_50", "raw_h264_no_timestamps", "tiny_4x4")
PREVIEW = ("avi_h264_copy_rate_mismatch", "raw_h264_bframes", "ts_h264_bframes", "webm_vp9_opus", "bitflips_mp4",
           "trunc_faststart_90", "tiny_2x2", "text_as_mp4", "one_frame_mp4", "mkv_duplicate_timestamps")


def build(root: Path, name: str, sources: Sources) -> Case:
    """Make case ``name`` under ``root``; raises ``LookupError`` when it needs the ffmpeg CLI and there is none."""
    case = CASES[name](sources, root / name)
    extra = (("render_pencil",) if name in PENCIL else ()) + (("preview",) if name in PREVIEW else ())
    return Case(case.name, case.path, case.expect, case.frames, case.knows, case.output,
                case.commands + extra)


def expected_frames(path: Path) -> list[float | None]:
    """The frames FFmpeg decodes from the first video stream, as their times in seconds (None: no stamp).

    Packets that do not decode are skipped and every frame the decoder gives counts, in its order, as
    ``ffmpeg -i X -map 0:v:0 -f null -`` counts them (it keeps frames whose stamps repeat or go back: AVI's
    decode-order stamps do). An input that does not open, or has no video, decodes nothing.
    """
    times: list[float | None] = []
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return []
            vs = c.streams.video[0]
            try:
                for packet in c.demux(vs):
                    try:
                        frames = vs.decode(packet)
                    except av.error.FFmpegError:
                        continue
                    times += [None if f.pts is None else float(f.pts * f.time_base) for f in frames]
            except av.error.FFmpegError:
                pass  # a truncated or garbled container stops demuxing: what decoded so far counts
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return []
    return times


def frame_period(path: Path) -> Fraction:
    """One frame's duration of ``path``'s first video stream (1/25 s when the file states no rate)."""
    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
    except (av.error.FFmpegError, IndexError):
        rate = None
    return 1 / Fraction(rate) if rate else Fraction(1, 25)
