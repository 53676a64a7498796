"""What a video file holds, read once before anything decodes: its streams, every frame's time, what is lost.

The container's stamps are not trusted blindly: where they are decode times (AVI, some MPEG-TS), the frames
are named by the stamps the decoder gives them and timed from the sorted decode stamps; where there are
none (raw streams), from the codec's frame rate. Frames a damaged file lists but cannot decode are counted,
so a render can say how many were lost. :class:`VideoInfo` is the result every later step plans from.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from core.errors import MediaNotFoundError, UnsupportedVideoError

from .frames import ColorTags, guess_color_tags

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
    """What the studio needs to know about an input, from one demux pass plus a few decoded frames.

    ``pts`` lists every frame's presentation timestamp in order (``time_base`` units): the output keeps them.
    ``frame_ids`` holds, where they differ from ``pts``, the stamps the decoder puts on each frame (AVI's
    decode-order counters, which are not presentation times); ``keyframes`` holds those stamps for frames a
    decoder can start from and ``seek_points`` (when not empty) what to seek to for each. ``seekable`` is
    False for streams whose frames carry no usable stamps (a raw elementary stream, duplicated stamps):
    every range is then decoded from the top and frames are counted. ``timestamps`` says where ``pts`` came
    from: the packets' "pts", their "dts", or the frame "rate". ``rotation`` is FFmpeg's display rotation in
    degrees counter-clockwise; ``width``/``height`` are the upright (displayed) size.
    ``frame_count`` counts the frames that decode where the probe decoded them all (``undecodable`` then says
    how many packets did not), else the packets: a damaged frame found later is reported by the render.
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
    frame_ids: tuple[int, ...] = field(default=(), repr=False)
    seek_points: tuple[int, ...] = field(default=(), repr=False)
    seekable: bool = True
    timestamps: str = "pts"
    undecodable: int = 0  # packets found not to decode when the probe decoded the whole stream (damaged input)

    def to_json(self) -> dict[str, Any]:
        """The probe report: everything but the per-frame lists, with exact fractions as strings."""
        d = asdict(self)
        for k in ("pts", "durations", "keyframes", "frame_ids", "seek_points"):
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
        return tuple(i for i, p in enumerate(self.frame_ids or self.pts) if p in keys)

    @property
    def encoded_size(self) -> tuple[int, int]:
        """(width, height) written by 4:2:0 encoders: odd sizes are padded by one edge row/column."""
        return self.width + self.width % 2, self.height + self.height % 2


def open_input(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise MediaNotFoundError(f"{path}: no such file") from None
    except av.error.FFmpegError as exc:
        raise UnsupportedVideoError(f"{path}: not a video file FFmpeg can read ({av_message(exc)})") from None


def av_message(exc: Exception) -> str:
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


@dataclass
class _Packets:
    """What one demux pass learns of the video packets (decode order) and the audio streams' extents."""

    pts: list[int | None] = field(default_factory=list)
    dts: list[int | None] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)
    key: list[bool] = field(default_factory=list)
    audio: dict[int, list[int]] = field(default_factory=dict)
    damaged: str = ""  # why the demuxer stopped early, if it did
    skipped: int = 0  # video packets left out: empty (a dropped frame in AVI) or discarded by an edit list

    def stamped(self) -> bool:
        """Every packet has a pts, and no two the same: they can name the frames."""
        return None not in self.pts and len(set(self.pts)) == len(self.pts)

    def in_decode_order(self) -> bool:
        """Whether the pts only grow in decode order: true of streams without reordering, and of AVI, whose
        "pts" are decode-order counters even where the decoder reorders (B-frames)."""
        return all(a < b for a, b in itertools.pairwise(self.pts))  # type: ignore[operator]


def _demux(c: av.container.InputContainer, vs: av.video.stream.VideoStream, path: Path) -> _Packets:
    """One pass over the packets. A damaged container stops the pass; what came before it is kept (the
    frames FFmpeg would decode too), and the reason is logged."""
    pk = _Packets()
    try:
        for p in c.demux(vs, *c.streams.audio):
            if p.size == 0 or p.is_discard:  # discarded: an edit list hides it; FFmpeg outputs no frame for it
                pk.skipped += p.stream.type == "video" and not (p.size == 0 and p.pts is None and p.dts is None)
                continue
            if p.stream.type == "audio":
                if p.pts is not None:
                    end = p.pts + (p.duration or 0)
                    ext = pk.audio.setdefault(p.stream.index, [p.pts, end])
                    ext[0], ext[1] = min(ext[0], p.pts), max(ext[1], end)
                continue
            pk.pts.append(p.pts)
            pk.dts.append(p.dts)
            pk.durations.append(p.duration or 0)
            pk.key.append(p.is_keyframe)
    except av.error.FFmpegError as exc:
        pk.damaged = av_message(exc)
        log.warning("%s: the container is damaged after %d video packets (%s); reading what came before",
                    path, len(pk.pts), pk.damaged)
    return pk


def _decoded_stamps(c: av.container.InputContainer, vs: av.video.stream.VideoStream, limit: int | None = None
                    ) -> tuple[list[int | None], av.VideoFrame | None]:
    """The stamps (``frame.pts``) of the frames the decoder gives from the top, in its output order, and the
    first frame: the first ``limit`` frames, or every one (what ``ffmpeg -f null`` counts)."""
    with contextlib.ExitStack() as stack:
        try:
            c.seek(0, stream=vs)
        except av.error.FFmpegError:  # a raw stream FFmpeg cannot seek in: read it again from the top
            c = stack.enter_context(open_input(Path(c.name)))
            vs = c.streams.video[0]
        return _stamps(c, vs, limit)


def _stamps(c: av.container.InputContainer, vs: av.video.stream.VideoStream, limit: int | None
            ) -> tuple[list[int | None], av.VideoFrame | None]:
    stamps: list[int | None] = []
    first = None
    for frame in decode_tolerant(c, vs):
        if first is None:
            first = frame
        stamps.append(frame.pts)
        if limit is not None and len(stamps) >= limit:
            break
    return stamps, first


def decode_tolerant(c: av.container.InputContainer, vs: av.video.stream.VideoStream,
                    on_error: Callable[[], None] | None = None) -> Iterator[av.VideoFrame]:
    """Decode ``vs`` from where the container stands as FFmpeg's own tools do: a packet that does not decode is
    skipped (its frame is lost, the next keyframe recovers), and a container damaged part way ends the stream.
    ``on_error()`` is called at each packet that does not decode (it may raise to stop the decode)."""
    packets = c.demux(vs)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as exc:
            log.debug("%s: demuxing stopped (%s)", c.name, av_message(exc))
            packet = None  # flush what the decoder holds
        try:
            frames = vs.decode(packet)
        except av.error.FFmpegError as exc:
            log.debug("%s: a packet did not decode (%s)", c.name, av_message(exc))
            if on_error is not None:
                on_error()
            frames = []
        yield from frames
        if packet is None:
            return


#: The largest frame side rendered: a 16384x16384 frame is 800 MB as RGB, and a chunk holds several at once.
MAX_SIDE = 8192


#: Frames decoded from the top to check that a stream's stamps are presentation times (AVI's are not).
_CHECKED_FRAMES = 16


def probe(path: str | Path) -> VideoInfo:
    """Probe a video: one demux pass for the frames' timestamps and keyframes, a few decoded frames.

    The frames are those FFmpeg decodes (``ffmpeg -i X -map 0:v:0 -f null -``), in its order. Their timestamps
    are the packets' pts where those are presentation times; where they are not (AVI's decode-order stamps
    with B-frames, missing or repeated stamps), the stream is decoded once to count and name the frames, and
    the times come from the packets' dts, else from the frame rate.

    Raises MediaNotFoundError / UnsupportedVideoError with a one-line reason naming the file.
    """
    path = Path(path)
    check_input_file(path)
    with open_input(path) as c:
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
        pk = _demux(c, vs, path)
        if not pk.pts:
            raise UnsupportedVideoError(f"{path}: no decodable video frames"
                                        + (f" ({pk.damaged})" if pk.damaged else ""))
        trusted = pk.stamped()
        try:
            reorder_check = trusted and pk.in_decode_order()
            checked, first = _decoded_stamps(c, vs, None if not trusted else _CHECKED_FRAMES if reorder_check else 1)
            if reorder_check and any(a is None or b is None or b <= a
                                                         for a, b in itertools.pairwise(checked)):
                trusted = False  # stamps in decode order, frames reordered: they name packets, not times
                checked, first = _decoded_stamps(c, vs)
        except av.error.FFmpegError as exc:
            raise UnsupportedVideoError(f"{path}: no decodable video frames ({av_message(exc)})") from None
        if first is None:
            raise UnsupportedVideoError(f"{path}: no decodable video frames")
        if trusted:
            ids: list[int] = []
            order = np.argsort(np.asarray(pk.pts, dtype=np.int64), kind="stable")
            pts = [pk.pts[i] for i in order]
            packet_durs = [pk.durations[i] for i in order]
            # seek on decode stamps where there are (the MPEG-TS and MP4 demuxers search by them; a seek to
            # a keyframe's pts can land past it), else on pts (Matroska has none)
            key_seek = sorted((p, d if d is not None else p) for p, d, k in zip(pk.pts, pk.dts, pk.key, strict=True)
                              if k)
            keys, seek_points = [k for k, _ in key_seek], [s for _, s in key_seek]
            seekable, source = True, "pts"
            if first.pts is not None and first.pts not in set(pts):
                log.warning("%s: first decoded pts %s not among packet pts", path, first.pts)
        else:
            ids, pts, packet_durs, keys, seek_points, seekable, source = _restamp(pk, checked, vs, tb, path)
        durs = _frame_durations(pts, packet_durs)
        rotation = round(first.rotation or 0) % 360
        tagged = cc.colorspace in (1, 5, 6, 7, 9, 10)
        tags = guess_color_tags(cc.colorspace or first.colorspace, int(cc.color_range or first.color_range),
                                vs.height or first.height, int(cc.color_primaries or 2), int(cc.color_trc or 2))
        fmt_obj = av.VideoFormat(cc.format.name if cc.format else first.format.name)
        bit_depth = max(comp.bits for comp in fmt_obj.components)
        w, h = first.width, first.height
        if max(w, h) > MAX_SIDE:
            raise UnsupportedVideoError(f"{path}: frames of {w}x{h} are larger than the studio renders "
                                        f"({MAX_SIDE} pixels a side at most); scale the video down first")
        if rotation in (90, 270):
            w, h = h, w
        steps = np.diff(np.asarray(pts, dtype=np.int64))
        # millisecond-rounded time bases jitter by a tick (41/42 ms at 24 fps); that is not VFR
        vfr = bool(len(steps) > 1 and (steps.max() - steps.min()) > max(1.0, 0.1 * steps.mean()))
        duration_ticks = pts[-1] + durs[-1] - pts[0]
        return VideoInfo(
            path=str(path.resolve()), size_bytes=path.stat().st_size, container=fmt, codec=cc.name,
            coded_width=first.width, coded_height=first.height, width=w, height=h, rotation=rotation,
            fps=_rate(vs, pts, tb), time_base=Fraction(tb),
            duration=float(duration_ticks * tb), frame_count=len(pts), vfr=vfr, pix_fmt=fmt_obj.name,
            bit_depth=bit_depth, color=tags, color_tagged=tagged, stream_index=vs.index,
            audio=_audio_info(c, pk.audio), pts=tuple(pts), durations=tuple(durs), keyframes=tuple(keys),
            frame_ids=tuple(ids), seek_points=tuple(seek_points), seekable=seekable, timestamps=source,
            undecodable=(0 if trusted else max(0, len(pk.pts) - len(pts))) + _missing(vs, pk, pts, durs, tb),
        )


def _missing(vs: av.video.stream.VideoStream, pk: _Packets, pts: list[int], durs: list[int], tb: Fraction) -> int:
    """Frames the container says it has but whose data is gone (a truncated file): the index's frame count
    (MP4 and MOV list every sample; AVI's count is of its header's ticks, not frames) beyond the packets
    found, else a stream duration (Matroska's DURATION tag) more than a frame beyond the frames found."""
    if vs.frames and "mp4" in vs.container.format.name:
        return max(0, vs.frames - len(pk.pts) - pk.skipped)
    stated = vs.metadata.get("DURATION") or vs.metadata.get("duration") or ""
    try:
        h, m, s = stated.split(":")
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return 0
    step = float(Fraction(int(np.median(durs)) if durs else 1) * tb)
    have = float(Fraction(pts[-1] + durs[-1] - pts[0]) * tb)
    tail = round((seconds - have) / step) if step > 0 and seconds - have > 1.5 * step else 0
    return tail + _gaps([p for p in pk.pts if p is not None])


def _gaps(stamps: list[int]) -> int:
    """Frames missing between the packets of a constant-rate stream: a gap of k frame steps is k - 1 frames
    (a damaged Matroska cluster that the demuxer skipped whole). Steps that vary otherwise (VFR) say nothing."""
    if len(stamps) < 8:
        return 0
    steps = np.diff(np.unique(np.asarray(stamps, np.int64)))
    step = float(np.median(steps))
    if step <= 0:
        return 0
    ratio = steps / step
    regular = np.abs(ratio - 1) <= 0.02  # a tick of jitter in a rounded time base
    whole = (ratio > 1.5) & (np.abs(ratio - np.round(ratio)) <= 0.02)
    if not np.all(regular | whole) or np.count_nonzero(regular) < 0.75 * len(steps):
        return 0
    return int(np.sum(np.round(ratio[whole]) - 1))


def _rate(vs: av.video.stream.VideoStream, pts: list[int], tb: Fraction) -> Fraction:
    """The frame rate: the container's average where it agrees with the frames' own timestamps (within 25 %:
    dropped or lost frames are not a new rate), else measured from them (an AVI muxed at 60000/1001 with a
    frame every other tick is 29.97 fps)."""
    span = Fraction(pts[-1] - pts[0]) * Fraction(tb)
    measured = (Fraction(len(pts) - 1) / span).limit_denominator(1001 * 1000) if span > 0 else None
    stated = Fraction(vs.average_rate) if vs.average_rate else None
    if stated and (measured is None or abs(stated / measured - 1) <= Fraction(1, 4)):
        return stated
    if measured:
        return measured
    guess = vs.guessed_rate or vs.base_rate
    return Fraction(guess) if guess else Fraction(25)


def _restamp(pk: _Packets, stamps: list[int | None], vs: av.video.stream.VideoStream, tb: Fraction, path: Path
             ) -> tuple[list[int], list[int], list[int], list[int], list[int], bool, str]:
    """Frames named and timed when the packets' pts are not presentation times, from a full decode's stamps.

    Returns (frame ids, presentation pts, packet durations, keyframe ids, their seek points, seekable, source).
    Frames are named by the stamp the decoder gives them where every stamp is there and unique (AVI: the
    packet's counter); else by their count from the top (not seekable). Times: the packets' dts, sorted, where
    there is one per frame, all different (AVI, MPEG-TS); else one frame period apart from the first stamp.
    """
    n = len(stamps)
    named = None not in stamps and len(set(stamps)) == n
    ids = [int(s) for s in stamps] if named else []  # type: ignore[arg-type]
    keys, seek_points = [], []
    if named:
        known = set(ids)
        for p, d, k in zip(pk.pts, pk.dts, pk.key, strict=True):
            if k and p in known:
                keys.append(int(p))  # type: ignore[arg-type]
                seek_points.append(int(d if d is not None else p))  # type: ignore[arg-type]
    dts = [d for d in pk.dts if d is not None]
    if len(dts) == len(pk.dts) == n and len(set(dts)) == n:
        pts, source = sorted(dts), "dts"
        step = int(np.median(np.diff(pts))) if n > 1 else max(1, pk.durations[0])
        packet_durs = [step] * n  # AVI's packet durations count its own ticks, whatever a frame lasts
    else:
        rate = Fraction(vs.codec_context.framerate or vs.guessed_rate or vs.average_rate or 25)  # the codec's own first
        step = Fraction(1) / (rate * Fraction(tb))
        start = next((s for s in (*pk.dts, *stamps) if s is not None), 0)
        pts = [int(start + round(i * step)) for i in range(n)]
        packet_durs, source = [max(1, round(step))] * n, "rate"
    log.info("%s: packet stamps are not presentation times; %d frames named by %s, timed by %s", path, n,
             "their decoder stamps" if named else "their count (no seeking)", source)
    return ids, pts, packet_durs, keys, seek_points, named, source


def _frame_durations(pts: list[int], packet_durs: list[int]) -> list[int]:
    """Per-frame durations: the gap to the next frame; the last frame keeps its packet duration."""
    out = [b - a for a, b in itertools.pairwise(pts)]
    last = packet_durs[-1] if packet_durs and packet_durs[-1] > 0 else (out[-1] if out else 1)
    return [*out, last]


def count_frames(path: str | Path) -> int:
    """Video packets in a file we wrote (one per frame): a cheap check that a chunk is complete."""
    try:
        with av.open(str(path)) as c:
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except (av.error.FFmpegError, IndexError):
        return -1
