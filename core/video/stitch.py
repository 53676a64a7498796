"""Join rendered chunks by stream copy and add the source's other streams once, interleaved by time.

The output keeps what the source carries besides its picture: every audio track and every subtitle track
(in source order, with their language, title and disposition), the chapters and the container's tags.
Audio is never cut per chunk (AAC clicks at the joins): every source audio packet is copied into the
final file, or re-encoded to AAC when the output container cannot hold the source codec. Beside ProRes and
DNxHR the audio is PCM (what editors expect of a mastering file): the source's own pcm_s16le/pcm_s24le
copied, anything else decoded to pcm_s24le (pcm_s16le from a 16-bit source). Subtitles are copied, or
converted to the container's text codec (mov_text in .mp4/.mov, SubRip in .mkv) when it cannot hold
theirs; a track that fits neither way (any in .mxf) is left out with a warning naming it, never a failed
render. An MXF file keeps no timestamps: its frames are numbered on its frame grid, and its audio (PCM at
48 kHz) starts with the first frame. An image sequence (:func:`write_sequence`) is a folder of frame files
with its audio beside them as WAV files.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import io
import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.subtitles.subtitle import SubtitleSet

from core.errors import ConfigError, RenderError

from .probe import VideoInfo
from .writer import CONTAINERS

log = logging.getLogger(__name__)

#: What ``--audio`` / ``--subtitles`` may say: keep every track of that kind, or none.
KEEP_CHOICES = ("all", "none")

#: The text subtitle codec each output container takes when a source track's own codec cannot go in.
_TEXT_SUBTITLES = {"mp4": "mov_text", "mov": "mov_text", "matroska": "subrip"}  # MXF holds none
#: Containers whose players show any text codec FFmpeg writes there. The mp4 muxer also takes WebVTT,
#: which QuickTime players do not show: text goes into .mp4/.mov as mov_text.
_ANY_TEXT = frozenset({"matroska"})

#: Tags a muxer writes itself or that describe the source file's packaging, not its content: a copy would
#: be stale (Matroska's per-track statistics, the mp4 brand, the encoder that made the source).
_PACKAGING_TAGS = frozenset({"encoder", "duration", "bps", "number_of_frames", "number_of_bytes", "major_brand",
                             "minor_version", "compatible_brands", "vendor_id", "rotate"})

#: The .mov muxer stores a language only as one of QuickTime's old Macintosh language numbers, whose FFmpeg
#: names are ISO 639-2/B codes (and a few of its own): the /T spelling of those would be dropped.
_QUICKTIME_LANGUAGES = {"deu": "ger", "nld": "dut", "ell": "gre", "isl": "ice", "zho": "chi", "sqi": "alb",
                        "hye": "arm", "kat": "geo", "bod": "tib", "mya": "bur", "msa": "may", "mkd": "mac",
                        "cym": "wel", "swe": "sve", "hrv": "hr ", "srp": "sr ", "fao": "fo ", "pan": "pa ",
                        "gle": "iri"}
_EXTENSION = {fmt: ext for ext, fmt in CONTAINERS.items()}  # for messages: ".mkv", not "matroska"
#: Containers that carry attachments (the fonts an ASS track is drawn with, cover art).
_ATTACHMENTS = frozenset({"matroska"})
#: Picture codecs (decoder names) whose files are mastering files: their audio goes in as PCM.
_PCM_PICTURES = frozenset({"prores", "dnxhd"})
#: The PCM codecs audio is delivered in beside them; a source track already in one is copied.
_PCM = ("pcm_s16le", "pcm_s24le")
#: MXF's audio sample rate (FFmpeg's MXF muxer writes no other).
MXF_AUDIO_RATE = 48000

#: What an image-sequence folder holds: frame files, the WAV audio beside them and the timestamps file. A
#: render replaces an earlier sequence in its folder, never a folder holding anything else.
SEQUENCE_FILES = re.compile(r"frame_\d{6,}\.(png|tif)|audio(_\d+)?\.wav|timestamps\.txt")
FRAME_FILE = "frame_{:06d}{}"
TIMESTAMPS = "timestamps.txt"

#: (time in seconds, stream kind, packet): the order packets of all streams are muxed in.
Feed = Iterator[tuple[Fraction, int, av.Packet]]
_VIDEO, _AUDIO, _SUBTITLE = 0, 1, 2


def check_keep(what: str, value: str) -> str:
    """``value`` if it is one of :data:`KEEP_CHOICES`, else a ConfigError naming ``what``."""
    if value not in KEEP_CHOICES:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(KEEP_CHOICES)}")
    return value


def container_holds(fmt: str, codec: str) -> bool:
    """Whether FFmpeg's muxer ``fmt`` accepts ``codec`` (its own list, not ours)."""
    with av.open(io.BytesIO(), mode="w", format=fmt) as probe_out:
        return codec in probe_out.supported_codecs


def content_tags(metadata: Mapping[str, str], fmt: str = "") -> dict[str, str]:
    """A container's or stream's tags for an ``fmt`` output, without the packaging ones. QuickTime files name
    a track with a ``name`` tag; it becomes ``title``, which every muxer writes (mp4 writes it back as
    ``name``). A language goes into .mov in the spelling that muxer keeps."""
    tags = {k: v for k, v in metadata.items()
            if k.split("-")[0].lower() not in _PACKAGING_TAGS and not k.lower().startswith("_statistics")}
    if "title" not in {k.lower() for k in tags} and "name" in tags:
        tags["title"] = tags.pop("name")
    if fmt == "mov" and "language" in tags:
        tags["language"] = _QUICKTIME_LANGUAGES.get(tags["language"], tags["language"])
    return tags


def _key(packet: av.Packet) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return Fraction(ts or 0) * packet.time_base


def _video_packets(chunks: list[tuple[Path, int]], info: VideoInfo,
                   out_stream: av.video.stream.VideoStream, grid: Fraction | None = None) -> Feed:
    """Each chunk file starts at pts 0 (mp4 edit lists would round a later start to milliseconds);
    its ``offset`` (source time base) puts it back in place. Every packet gets its source frame's
    duration: encoders guess the last one, and a guess changes the clip's length.

    With ``grid`` (MXF's frame duration: MXF keeps no timestamps) the packets are numbered 0, 1, 2, ... in
    that time base instead: the picture is intra-coded (a packet a frame, in order) and the input was checked
    to be CFR at that rate (:func:`core.video.writer.check_delivery`).

    Where a chunk's container rounds stamps to a coarser time base than the source's (Matroska's
    milliseconds) and a chunk's offset is not a whole number of its ticks (NTSC-rate MPEG-TS, 1/90000, into
    .mkv), every packet goes out in the source's time base instead, at the stamp of the source frame its
    rounded one stands for (:func:`_source_stamps`): what FFmpeg carries over when it remuxes the source."""
    time_base = info.time_base
    durations = dict(zip(info.pts, info.durations, strict=True))
    last_dts: int | None = None
    frames = 0
    chunk_tb = _chunk_time_base(chunks)
    to_source = grid is None and chunk_tb is not None and any(
        (Fraction(offset) * time_base / chunk_tb).denominator != 1 for _, offset in chunks)
    for n, (path, offset) in enumerate(chunks):
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            shift = Fraction(offset) * time_base / vs.time_base
            if to_source:
                for p in _source_stamps(c.demux(vs), vs.time_base, offset, info, path):
                    if last_dts is not None and (p.dts is None or p.dts <= last_dts):
                        p.dts = min(last_dts + 1, p.pts)
                    last_dts = p.dts
                    p.duration = durations[p.pts]  # an exact source stamp: its own frame duration
                    p.stream = out_stream
                    yield _key(p), _VIDEO, p
                log.debug("stitched chunk %d (%s) in the source's time base", n, path.name)
                continue
            if shift.denominator != 1:
                raise RenderError(f"{path}: chunk time base {vs.time_base} cannot hold offset {offset}")
            for p in c.demux(vs):
                if p.size == 0:
                    continue
                if grid is not None:
                    p.pts = p.dts = frames
                    p.duration, p.time_base, p.stream = 1, grid, out_stream
                    frames += 1
                    yield _key(p), _VIDEO, p
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
                yield _key(p), _VIDEO, p
        log.debug("stitched chunk %d (%s)", n, path.name)


def _chunk_time_base(chunks: list[tuple[Path, int]]) -> Fraction | None:
    """The video time base the chunks' container gave them (every chunk is written the same way)."""
    if not chunks:
        return None
    with av.open(str(chunks[0][0])) as c:
        return Fraction(c.streams.video[0].time_base)


def _source_stamps(packets: Iterator[av.Packet], chunk_tb: Fraction, offset: int, info: VideoInfo,
                   path: Path) -> Iterator[av.Packet]:
    """A chunk's packets re-stamped in the source's time base: each pts becomes the stamp of the source frame
    it was rounded from (the nearest one; frames lie further apart than a chunk tick), each dts (where there
    is one) the offset plus its own value rescaled and rounded down, never past the pts. A pts further than
    half a tick from every source frame is a RenderError: the chunk does not hold the frames it should."""
    tb = info.time_base
    pts_all = info.pts
    half = Fraction(chunk_tb, 2) / tb
    for p in packets:
        if p.size == 0:
            continue
        if p.pts is None:
            raise RenderError(f"{path}: a chunk packet has no presentation stamp")
        at = offset + Fraction(p.pts) * chunk_tb / tb
        i = bisect.bisect_left(pts_all, at)
        near = min((pts_all[j] for j in (i - 1, i) if 0 <= j < len(pts_all)), key=lambda q: abs(q - at))
        if abs(near - at) > half:
            raise RenderError(f"{path}: chunk stamp {p.pts} ({chunk_tb}) is no source frame's")
        dts = None if p.dts is None else min(near, offset + math.floor(Fraction(p.dts) * chunk_tb / tb))
        p.time_base = tb
        p.pts, p.dts = near, dts
        yield p


# ----------------------------------------------------------------------------------- audio and subtitles
# Each adder puts one output stream for source stream ``index`` into ``out`` and returns it with the feed
# of its packets; a trial run of the same adder into memory says first whether it works for this muxer.

Adder = Callable[[av.container.OutputContainer, av.container.InputContainer, int], tuple[av.stream.Stream, Feed]]


#: AVFMT_TS_NONSTRICT: the muxer takes a packet with the same decode stamp as the one before (Matroska does,
#: mp4 does not: two subtitle cues starting together are one cue there).
_TS_NONSTRICT = 0x20000


def _strict(out: av.container.OutputContainer) -> bool:
    return not out.format.flags & _TS_NONSTRICT


def _in_order(src: av.container.InputContainer, index: int, kind: int, strict: bool) -> Iterator[av.Packet]:
    """The stream's packets that carry data and a stamp. A packet whose decode stamp goes back (a damaged
    source: bit flips in an MPEG-TS), repeats the one before where the muxer is ``strict``, or comes before
    its own decode stamp is skipped with a debug line: the muxer would refuse it, and one cue or one audio
    packet of a damaged file must not cost the render."""
    last: int | None = None
    for p in src.demux(src.streams[index]):
        if p.size == 0 or (p.dts is None and p.pts is None):
            continue
        ts = p.dts if p.dts is not None else p.pts
        if (last is not None and (ts < last or (strict and ts == last))) or (p.pts is not None and p.dts is not None
                                                                          and p.pts < p.dts):
            log.debug("%s: stream %d: a packet at %s does not follow the one at %s; skipped", src.name, index, ts,
                      last)
            continue
        last = ts
        yield p


def _copy(out: av.container.OutputContainer, src: av.container.InputContainer, index: int,
          kind: int = _AUDIO) -> tuple[av.stream.Stream, Feed]:
    stream = out.add_stream_from_template(src.streams[index])

    def feed() -> Feed:
        for p in _in_order(src, index, kind, _strict(out)):
            p.stream = stream
            yield _key(p), kind, p

    return stream, feed()


def _copy_subtitles(out: av.container.OutputContainer, src: av.container.InputContainer,
                    index: int) -> tuple[av.stream.Stream, Feed]:
    return _copy(out, src, index, _SUBTITLE)


#: FFmpeg's default layout per channel count, for streams that only say "N channels" (PCM often does).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _named_layout(layout: str, channels: int) -> str:
    """AAC refuses unnamed layouts: keep a named one, else the default for the channel count."""
    return layout if layout and not layout.endswith("channels") else _DEFAULT_LAYOUTS.get(channels, "stereo")


def _to_aac(out: av.container.OutputContainer, src: av.container.InputContainer,
            index: int) -> tuple[av.stream.Stream, Feed]:
    """Decode and encode to AAC, for a codec the container cannot hold (PCM in mp4, for one)."""
    s = src.streams[index]
    cc_in = s.codec_context
    stream = out.add_stream("aac", rate=cc_in.sample_rate or 48000)
    cc = stream.codec_context
    cc.layout = _named_layout(getattr(cc_in.layout, "name", ""), cc_in.channels or 0)

    def feed() -> Feed:
        resampler = av.AudioResampler(format=cc.format.name, layout=cc.layout.name, rate=cc.sample_rate)
        for frame in src.decode(s):
            for rf in resampler.resample(frame):
                for p in stream.encode(rf):
                    yield _key(p), _AUDIO, p
        for rf in resampler.resample(None):
            for p in stream.encode(rf):
                yield _key(p), _AUDIO, p
        for p in stream.encode(None):
            yield _key(p), _AUDIO, p

    return stream, feed()


def _pcm_codec(stream: av.stream.Stream) -> str:
    """pcm_s16le for a source of 16 bits or fewer (nothing to gain), else pcm_s24le (a lossy codec decodes to
    float, which 24 bits hold without audible rounding)."""
    cc = stream.codec_context
    fmt = cc.format.name if cc is not None and cc.format is not None else ""
    return "pcm_s16le" if fmt.rstrip("p") in ("u8", "s16") else "pcm_s24le"


def _to_pcm(codec: str, rate: int | None = None, start: Fraction | None = None) -> Adder:
    """An adder that decodes an audio track to PCM ``codec`` at ``rate`` Hz (None: the source's).

    Without ``start`` the samples keep their source times (.mov keeps timestamps). With it (seconds on the
    source timeline: the first frame's time) the track is laid end to end from that moment, for files that
    keep no timestamps (MXF, a WAV beside frame files): silence where the source has no sound (before it
    starts, in a gap), samples from before it or overlapping ones dropped, so sample 0 plays with frame 0.
    """

    def add(out: av.container.OutputContainer, src: av.container.InputContainer,
            index: int) -> tuple[av.stream.Stream, Feed]:
        s = src.streams[index]
        cc_in = s.codec_context
        hz = rate or cc_in.sample_rate or MXF_AUDIO_RATE
        stream = out.add_stream(codec, rate=hz)
        cc = stream.codec_context
        cc.layout = _named_layout(getattr(cc_in.layout, "name", ""), cc_in.channels or 0)
        stream.time_base = Fraction(1, hz)

        def feed() -> Feed:
            resampler = av.AudioResampler(format=cc.format.name, layout=cc.layout.name, rate=hz)
            frames = (rf for frame in itertools.chain(src.decode(s), [None]) for rf in resampler.resample(frame))
            if start is not None:
                frames = _end_to_end(frames, round(start * hz))
            for frame in frames:
                for p in stream.encode(frame):
                    yield _key(p), _AUDIO, p
            for p in stream.encode(None):
                yield _key(p), _AUDIO, p

        return stream, feed()

    return add


def _end_to_end(frames: Iterator[av.AudioFrame], origin: int) -> Iterator[av.AudioFrame]:
    """Packed PCM ``frames`` (pts in samples) laid end to end from sample ``origin`` on, numbered from 0:
    a gap before a frame becomes silence, samples before ``origin`` or already given are dropped."""
    at = origin
    for f in frames:
        data = f.to_ndarray()  # packed: (1, samples * channels)
        channels = data.shape[1] // max(f.samples, 1)
        begin = at if f.pts is None else f.pts
        while begin > at:  # silence, a second at most per frame
            n = min(begin - at, f.sample_rate)
            yield _pcm_frame(np.zeros((1, n * channels), data.dtype), f, at - origin)
            at += n
        skip = at - begin
        if skip < f.samples:
            yield _pcm_frame(data[:, skip * channels:], f, at - origin)
            at += f.samples - skip


def _pcm_frame(data: np.ndarray, like: av.AudioFrame, pts: int) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=like.format.name, layout=like.layout.name)
    frame.sample_rate, frame.pts, frame.time_base = like.sample_rate, pts, Fraction(1, like.sample_rate)
    return frame


def _to_text(target: str) -> Adder:
    """An adder that decodes a text subtitle track to FFmpeg's ASS events and encodes them as ``target``.

    The encoder reads its styles (font, size, colours) from the decoder's ASS header, as ffmpeg does. A cue
    keeps its packet's start and duration in the source time base; cues that start together become one (their
    lines one above the other); cues that decode to nothing (mp4's gap fillers) are dropped, and the muxer
    writes its own.
    """

    def add(out: av.container.OutputContainer, src: av.container.InputContainer,
            index: int) -> tuple[av.stream.Stream, Feed]:
        s = src.streams[index]
        dec = s.codec_context
        if dec is None or not dec.codec.text_sub:
            raise ValueError(f"stream {index}: not text subtitles")
        dec.open(strict=False)  # the header exists once the decoder is open
        stream = out.add_stream(target)
        stream.time_base = s.time_base
        enc = stream.codec_context
        enc.subtitle_header = dec.subtitle_header
        enc.open(strict=False)  # now, so a refusal shows in the trial and not mid-render

        def feed() -> Feed:
            group: list[tuple[av.Packet, SubtitleSet]] = []
            for p in _in_order(src, index, _SUBTITLE, strict=False):
                try:
                    cues = dec.decode2(p)
                except av.error.FFmpegError as exc:
                    log.debug("%s: subtitle stream %d: a cue at %s does not decode (%s)", src.name, index, p.pts, exc)
                    continue
                if cues is None or not any(getattr(r, "ass", b"") for r in cues):
                    continue
                if group and _start(p) != _start(group[0][0]):
                    yield from _encoded(enc, stream, group)
                    group = []
                group.append((p, cues))
            if group:
                yield from _encoded(enc, stream, group)

        return stream, feed()

    return add


def _start(p: av.Packet) -> int:
    return p.pts if p.pts is not None else p.dts


def _encoded(enc: av.codec.CodecContext, stream: av.stream.Stream, group: list[tuple[av.Packet, SubtitleSet]]) -> Feed:
    """One output cue for source cues that start together (none, with a debug line, if it does not encode)."""
    p, cues = group[0]
    ms = p.time_base / Fraction(1, 1000)  # AVSubtitle display times are milliseconds
    span = max(c.end_display_time for _, c in group) - cues.start_display_time
    # several: one ASS event with the first's fields and every text ("ReadOrder,Layer,...,Effect,Text")
    fields = [r.ass.split(b",", 8) for _, c in group for r in c if getattr(r, "ass", b"").count(b",") >= 8]
    if len(group) > 1 and fields:
        cues = SubtitleSet.create(b",".join([*fields[0][:8], b"\\N".join(f[8] for f in fields)]), 0, span)
    try:
        q = enc.encode_subtitle(cues)
    except av.error.FFmpegError as exc:
        log.debug("subtitle cue at %s does not encode as %s (%s); skipped", _start(p), enc.name, exc)
        return
    q.pts = q.dts = _start(p) + round(group[0][1].start_display_time / ms)
    duration = max(pk.duration or 0 for pk, _ in group)
    q.duration = duration if duration and not group[0][1].start_display_time else max(0, round(span / ms))
    q.time_base = p.time_base
    q.stream = stream
    yield _key(q), _SUBTITLE, q


def _fits(fmt: str, source: Path, index: int, add: Adder) -> bool:
    """Try the real thing in memory: header, a few packets and the trailer (some muxers only object there,
    e.g. mp4 with 2-channel PCM)."""
    try:
        with av.open(str(source), metadata_errors="ignore") as src, av.open(io.BytesIO(), mode="w", format=fmt) as out:
            _, feed = add(out, src, index)
            for n, (_, _, packet) in enumerate(feed):
                out.mux(packet)
                if n >= 3:
                    break
        return True
    except (av.error.FFmpegError, ValueError, TypeError):  # TypeError: a stream PyAV cannot describe
        return False


def _choose(fmt: str, source: Path, stream: av.stream.Stream, pcm: bool = False,
            start: Fraction = Fraction(0)) -> tuple[Adder, str] | None:
    """How a source audio or subtitle stream goes into ``fmt``: copied, re-encoded or converted (with a
    word saying which for the log), or None when nothing works. ``pcm``: the picture is a mastering codec,
    the audio goes in as PCM; ``start``: the first frame's time (seconds), where MXF's audio starts."""
    if stream.type == "audio":
        if fmt == "mxf":  # nothing else goes in, and no trial: MXF refuses a file of audio alone
            if stream.codec_context is None:  # a stream PyAV cannot decode
                return None
            codec = _pcm_codec(stream)
            return _to_pcm(codec, MXF_AUDIO_RATE, start), f"written as {codec} at {MXF_AUDIO_RATE} Hz"
        if pcm:
            codec = _pcm_codec(stream)
            copy = stream.codec_context is not None and stream.codec_context.name in _PCM
            ways = [*([(_copy, "copied")] if copy else []), (_to_pcm(codec), f"converted to {codec}")]
        else:
            ways = [(_copy, "copied"), (_to_aac, "re-encoded to AAC")]
    else:
        target = _TEXT_SUBTITLES.get(fmt)
        if target is None:
            return None
        codec = stream.codec_context.codec if stream.codec_context is not None else None
        text = codec is not None and codec.text_sub
        ways = []
        if not text or fmt in _ANY_TEXT or codec.canonical_name == target:
            ways.append((_copy_subtitles, "copied"))
        if text:
            ways.append((_to_text(target), f"converted to {target}"))
    for add, how in ways:
        if _fits(fmt, source, stream.index, add):
            return add, how
    return None


def _describe(stream: av.stream.Stream) -> str:
    codec = stream.codec_context.codec.canonical_name if stream.codec_context is not None else "unknown"
    lang = stream.metadata.get("language")
    return f"{stream.type} stream {stream.index} ({codec}{', ' + lang if lang else ''})"


def _add_tracks(out: av.container.OutputContainer, src: av.container.InputContainer, source: Path, fmt: str,
                keep: dict[str, bool], stack: contextlib.ExitStack, pcm: bool = False,
                start: Fraction = Fraction(0)) -> list[Feed]:
    """Add the source's audio and subtitle streams to ``out`` (those ``keep`` asks for, each the way that
    works, with its tags and disposition) and its attachments; the feeds of their packets, in stream order.
    ``pcm`` and ``start``: as in :func:`_choose`."""
    feeds = []
    for s in (*src.streams.audio, *src.streams.subtitles):
        if not keep[s.type]:
            continue
        way = _choose(fmt, source, s, pcm, start)
        if way is None:
            log.warning("%s: %s cannot go into a %s file; left out", source, _describe(s), _EXTENSION[fmt])
            continue
        add, how = way
        if how != "copied":
            log.info("%s: %s %s for a %s file", source, _describe(s), how, _EXTENSION[fmt])
        own = stack.enter_context(av.open(str(source), metadata_errors="ignore"))  # one demuxer per track
        stream, feed = add(out, own, s.index)
        stream.metadata.update(content_tags(s.metadata, fmt))
        stream.disposition = s.disposition
        feeds.append(feed)
    for s in src.streams.attachments:  # no packets: the file is the stream's own data
        if fmt in _ATTACHMENTS:
            out.add_stream_from_template(s).metadata.update(content_tags(s.metadata, fmt))
        else:
            log.info("%s: attachment %s cannot go into a %s file; left out", source, s.name, _EXTENSION[fmt])
    return feeds


def stitch(chunks: list[tuple[Path, int]], source: Path, info: VideoInfo, out_path: Path, *,
           audio: str = "all", subtitles: str = "all") -> None:
    """Write ``out_path``: the chunks' video packets in order plus the source's audio and subtitle streams,
    attachments, chapters and container tags.

    ``chunks`` holds (file, pts offset in the source time base) in presentation order. ``audio`` and
    ``subtitles`` ("all" or "none") say which of those tracks to keep. A track the output container can
    take in no way is left out with a warning; a failure to write the output raises RenderError.
    """
    fmt = CONTAINERS[out_path.suffix.lower()]
    keep = {"audio": check_keep("audio", audio) == "all", "subtitle": check_keep("subtitles", subtitles) == "all"}
    if not chunks:
        raise RenderError(f"{source}: nothing to stitch")
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(av.open(str(out_path), mode="w", format=fmt))
        first = stack.enter_context(av.open(str(chunks[0][0])))
        src = stack.enter_context(av.open(str(source), metadata_errors="ignore"))
        ov = out.add_stream_from_template(first.streams.video[0])
        grid = 1 / info.fps if fmt == "mxf" else None
        ov.time_base = grid or info.time_base
        ov.codec_context.framerate = info.fps  # not carried by the template; matroska writes it to the header
        if info.stream_index < len(src.streams):
            ov.metadata.update(content_tags(src.streams[info.stream_index].metadata, fmt))
        out.metadata.update(content_tags(src.metadata, fmt))
        if src.chapters():
            out.set_chapters(src.chapters())  # the output keeps the source's timeline, so their times hold
        pcm = first.streams.video[0].codec_context.name in _PCM_PICTURES
        start = Fraction(info.pts[0]) * info.time_base if info.pts else Fraction(0)
        feeds = [_video_packets(chunks, info, ov, grid), *_add_tracks(out, src, source, fmt, keep, stack, pcm, start)]
        skipped = 0
        muxed = {stream.index: 0 for stream in out.streams}
        try:
            for _, kind, packet in heapq.merge(*feeds, key=lambda t: (t[0], t[1])):
                try:
                    out.mux(packet)
                    muxed[packet.stream.index] += 1
                except av.error.InvalidDataError:
                    if kind == _VIDEO:
                        raise
                    skipped += 1  # a damaged source packet (a garbled AAC header); FFmpeg drops it too
        except av.error.FFmpegError as exc:
            raise RenderError(f"{out_path}: stitching failed ({exc})") from None
        if skipped:
            log.warning("%s: %d damaged audio or subtitle packets left out", source, skipped)
        for stream in out.streams:
            if stream is not ov and not muxed[stream.index]:  # every packet past a truncation, or damaged
                log.warning("%s: %s track %d has no readable packet (damaged or truncated input); the output "
                            "cannot keep it (FFmpeg's own copy leaves it out too)", source, stream.type,
                            stream.index)


# ----------------------------------------------------------------------------------- image sequences

def foreign_files(folder: Path) -> list[str]:
    """The names in ``folder`` that an image sequence does not hold (:data:`SEQUENCE_FILES`), sorted; [] for
    a folder that does not exist."""
    try:
        return sorted(name for name in os.listdir(folder) if not SEQUENCE_FILES.fullmatch(name))
    except FileNotFoundError:
        return []


def write_sequence(chunks: list[tuple[Path, int]], source: Path, info: VideoInfo, folder: Path, ext: str, *,
                   audio: str = "all", subtitles: str = "all") -> int:
    """Write an image sequence into the empty ``folder``; returns its frame count.

    The chunks (.mov files of PNG or TIFF packets, each packet a whole image file; with their pts offsets in
    the source time base) become ``frame_000000<ext>``, ... in presentation order. ``timestamps.txt`` gives
    each frame's time (mkvmerge's timestamp format v2: milliseconds from frame 0), so a VFR input's timing is
    kept where image files have none. Each kept audio track becomes a WAV file beside them (``audio.wav``,
    ``audio_2.wav``, ...: PCM, which every editor and compositor reads sample-exact, with no encoder delay to
    shift it), starting with frame 0. Subtitles and attachments cannot go in: left out with a warning. Every
    file is fsynced, so the folder is whole once renamed.
    """
    keep_audio = check_keep("audio", audio) == "all"
    keep_subtitles = check_keep("subtitles", subtitles) == "all"
    if not chunks:
        raise RenderError(f"{source}: nothing to stitch")
    times: list[Fraction] = []
    for path, offset in chunks:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            for p in c.demux(vs):
                if p.size == 0:
                    continue
                _write_synced(folder / FRAME_FILE.format(len(times), ext), bytes(p))
                times.append(Fraction(offset) * info.time_base + Fraction(p.pts or 0) * vs.time_base)
    lines = "".join(f"{float((t - times[0]) * 1000):.3f}\n" for t in times)
    _write_synced(folder / TIMESTAMPS, f"# timestamp format v2\n{lines}".encode())
    with av.open(str(source), metadata_errors="ignore") as src:
        tracks = [s.index for s in src.streams.audio] if keep_audio else []
        for s in src.streams.subtitles if keep_subtitles else ():
            log.warning("%s: %s cannot go into an image sequence; left out", source, _describe(s))
    for n, index in enumerate(tracks):
        _write_wav(source, index, times[0], folder / ("audio.wav" if n == 0 else f"audio_{n + 1}.wav"))
    return len(times)


def _write_wav(source: Path, index: int, start: Fraction, path: Path) -> None:
    """Audio track ``index`` of ``source`` as a PCM WAV file whose first sample plays at ``start`` (seconds);
    RF64 past WAV's 4 GiB."""
    with av.open(str(source), metadata_errors="ignore") as src, \
            av.open(str(path), mode="w", format="wav", options={"rf64": "auto"}) as out:
        _, feed = _to_pcm(_pcm_codec(src.streams[index]), None, start)(out, src, index)
        for _, _, packet in feed:
            out.mux(packet)
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
