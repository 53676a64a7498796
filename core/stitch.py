"""Join rendered chunks by stream copy and add the source's audio once, interleaved by time.

Audio is never cut per chunk (AAC clicks at the joins): every source audio packet is copied into the
final file, or re-encoded to AAC when the output container cannot hold the source codec.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from .errors import RenderError
from .io import OUTPUT_FORMATS, VideoInfo

log = logging.getLogger(__name__)


def container_holds(fmt: str, codec: str) -> bool:
    """Whether FFmpeg's muxer ``fmt`` accepts ``codec`` (its own list, not ours)."""
    with av.open(io.BytesIO(), mode="w", format=fmt) as probe_out:
        return codec in probe_out.supported_codecs


def _can_copy(fmt: str, source: Path, stream_index: int) -> bool:
    """Try the real thing in memory: header, a few packets and the trailer (some muxers only object there,
    e.g. mp4 with 2-channel PCM)."""
    try:
        with av.open(str(source), metadata_errors="ignore") as src, av.open(io.BytesIO(), mode="w", format=fmt) as out:
            in_stream = src.streams[stream_index]
            oa = out.add_stream_from_template(in_stream)
            for n, packet in enumerate(src.demux(in_stream)):
                if packet.size == 0:
                    continue
                packet.stream = oa
                out.mux(packet)
                if n >= 3:
                    break
        return True
    except (av.error.FFmpegError, ValueError):
        return False


#: FFmpeg's default layout per channel count, for streams that only say "N channels" (PCM often does).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _named_layout(layout: str, channels: int) -> str:
    """AAC refuses unnamed layouts: keep a named one, else the default for the channel count."""
    return layout if layout and not layout.endswith("channels") else _DEFAULT_LAYOUTS.get(channels, "stereo")


def _key(packet: av.Packet) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return Fraction(ts or 0) * packet.time_base


def _video_packets(chunks: list[tuple[Path, int]], info: VideoInfo,
                   out_stream: av.video.stream.VideoStream) -> Iterator[tuple[Fraction, int, av.Packet]]:
    """Each chunk file starts at pts 0 (mp4 edit lists would round a later start to milliseconds);
    its ``offset`` (source time base) puts it back in place. Every packet gets its source frame's
    duration: encoders guess the last one, and a guess changes the clip's length."""
    time_base = info.time_base
    durations = dict(zip(info.pts, info.durations, strict=True))
    last_dts: int | None = None
    for n, (path, offset) in enumerate(chunks):
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            shift = Fraction(offset) * time_base / vs.time_base
            if shift.denominator != 1:
                raise RenderError(f"{path}: chunk time base {vs.time_base} cannot hold offset {offset}")
            for p in c.demux(vs):
                if p.size == 0:
                    continue
                if p.pts is not None:
                    p.pts += int(shift)
                    src_duration = durations.get(int(Fraction(p.pts) * vs.time_base / time_base))
                    if src_duration:
                        p.duration = int(Fraction(src_duration) * time_base / vs.time_base)
                if p.dts is not None:
                    p.dts += int(shift)
                elif last_dts is not None:
                    # matroska keeps no decode stamps: a later chunk's leading (reordered) packets come back
                    # without one, and the muxer refuses a stamp-less packet after stamped ones
                    p.dts = min(last_dts + 1, p.pts if p.pts is not None else last_dts + 1)
                if last_dts is not None and p.dts is not None and p.dts <= last_dts:
                    # a VFR join can leave equal decode stamps; nudge by one tick, never past pts
                    p.dts = min(last_dts + 1, p.pts if p.pts is not None else last_dts + 1)
                last_dts = p.dts
                p.stream = out_stream
                yield _key(p), 0, p
        log.debug("stitched chunk %d (%s)", n, path.name)


def _copy_audio(src: av.container.InputContainer, stream_index: int,
                out_stream: av.audio.stream.AudioStream) -> Iterator[tuple[Fraction, int, av.Packet]]:
    s = src.streams[stream_index]
    for p in src.demux(s):
        if p.size == 0 or (p.dts is None and p.pts is None):
            continue
        p.stream = out_stream
        yield _key(p), 1, p


def _encode_audio(src: av.container.InputContainer, stream_index: int,
                  out_stream: av.audio.stream.AudioStream) -> Iterator[tuple[Fraction, int, av.Packet]]:
    s = src.streams[stream_index]
    cc = out_stream.codec_context
    resampler = av.AudioResampler(format=cc.format.name, layout=cc.layout.name, rate=cc.sample_rate)
    for frame in src.decode(s):
        for rf in resampler.resample(frame):
            for p in out_stream.encode(rf):
                yield _key(p), 1, p
    for rf in resampler.resample(None):
        for p in out_stream.encode(rf):
            yield _key(p), 1, p
    for p in out_stream.encode(None):
        yield _key(p), 1, p


def stitch(chunks: list[tuple[Path, int]], source: Path, info: VideoInfo, out_path: Path) -> None:
    """Write ``out_path``: the chunks' video packets in order plus every audio stream of ``source``.

    ``chunks`` holds (file, pts offset in the source time base) in presentation order.
    """
    fmt = OUTPUT_FORMATS[out_path.suffix.lower()]
    if not chunks:
        raise RenderError(f"{source}: nothing to stitch")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(av.open(str(out_path), mode="w", format=fmt))
        first = stack.enter_context(av.open(str(chunks[0][0])))
        ov = out.add_stream_from_template(first.streams.video[0])
        ov.time_base = info.time_base
        ov.codec_context.framerate = info.fps  # not carried by the template; matroska writes it to the header
        sources = [_video_packets(chunks, info, ov)]
        for a in info.audio:
            src = stack.enter_context(av.open(str(source), metadata_errors="ignore"))
            in_stream = src.streams[a.index]
            if _can_copy(fmt, source, a.index):
                oa = out.add_stream_from_template(in_stream)
                sources.append(_copy_audio(src, a.index, oa))
            else:
                log.info("%s: %s audio cannot go into %s; re-encoding to AAC", source, a.codec, fmt)
                oa = out.add_stream("aac", rate=a.sample_rate or 48000)
                oa.codec_context.layout = _named_layout(a.layout, a.channels)
                sources.append(_encode_audio(src, a.index, oa))
        try:
            for _, _, packet in heapq.merge(*sources, key=lambda t: (t[0], t[1])):
                out.mux(packet)
        except av.error.FFmpegError as exc:
            raise RenderError(f"{out_path}: stitching failed ({exc})") from None
