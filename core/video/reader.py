"""Decoding frames by global index, with seeking, on the CPU or NVDEC.

Frames leave the reader upright, RGB uint8 (the frame contract of :mod:`core.video.frames`), with their
global index and source pts; a range starts at the nearest keyframe before it and decodes forward.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import MediaNotFoundError, UnsupportedVideoError

from .frames import Frame, av_to_rgb, av_to_rgbx, rotate_upright
from .probe import VideoInfo, av_message, decode_tolerant, open_input

log = logging.getLogger(__name__)


def _as_stream_format(frame: av.VideoFrame, pix_fmt: str) -> av.VideoFrame:
    """A device-downloaded frame (interleaved chroma) in the stream's planar format, samples unchanged:
    swscale's unscaled path only moves them (NV12 -> yuv420p and P010 -> yuv420p10le round-trip exactly)."""
    out = frame.reformat(format=pix_fmt)
    out.pts, out.time_base = frame.pts, frame.time_base
    return out

#: where a render's frames may decode: the CPU (FFmpeg's threaded software decoders) or NVIDIA's NVDEC
#: (:class:`Reader`; not a preset field: it never changes the frames, so it is no part of a job's hash)
DECODERS = ("cpu", "cuda")



class _SeekMissed(Exception):
    """A seek landed after the frame we asked for."""


class _Redecode(Exception):
    """A packet did not decode under frame threads: decode the rest of the range again, slice-threaded."""


def _open_decoding(path: Path, decode: str) -> tuple[av.container.InputContainer, str]:
    """The container for ``decode`` ("cpu", "cuda"), and a note: "" when the device opened, else why the
    CPU decodes instead (no device, no driver, a build without it). FFmpeg itself still falls back to its
    software decoder for a stream the device cannot take (an unsupported codec or profile)."""
    if decode == "cpu":
        return open_input(path), ""
    if decode not in DECODERS:
        raise ValueError(f"decode: {decode!r} is not one of {', '.join(DECODERS)}")
    from av.codec.hwaccel import HWAccel

    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore",
                            hwaccel=HWAccel(decode, allow_software_fallback=True))
    except (av.error.FileNotFoundError, FileNotFoundError):
        raise MediaNotFoundError(f"{path}: no such file") from None
    except Exception as exc:  # PermissionError (no device node), av errors (no driver), ...: decode on the CPU
        why = f"{decode} decoding unavailable ({type(exc).__name__}: {av_message(exc) or 'no reason given'})"
    else:
        video = container.streams.video
        if not video or video[0].codec_context.is_hwaccel:
            return container, ""
        # the device opened, but it has no decoder for this codec: PyAV decodes in software
        why = f"{decode} decoding unavailable (no {decode} decoder for {video[0].codec_context.name})"
        container.close()
    log.info("%s: %s; decoding on the CPU", path, why)
    return open_input(path), why


class Reader:
    """Decode a range of frames by global index, upright RGB, threaded decode.

    Use as a context manager. Seeks to the last keyframe at or before the range and decodes forward,
    so any range decodes to exactly the frames a full pass would give (a stream that cannot be sought,
    see :attr:`VideoInfo.seekable`, is decoded from the top). A frame that does not decode (damaged input)
    is skipped, as FFmpeg skips it, and its index is added to :attr:`lost`.

    ``decode="cuda"`` decodes on the GPU (NVDEC) where it opens, else on the CPU, with the reason in
    :attr:`decode_note`. Frames come back to system memory in the device's layout (NV12, P010) and are
    rearranged to the stream's own format (planar 4:2:0): an exact copy of the samples, so every path after
    the reader (RGB, pass-through, table lookups) sees the frames a software decode gives.
    """

    def __init__(self, info: VideoInfo, decode: str = "cpu") -> None:
        self.info = info
        self._index = {p: i for i, p in enumerate(info.frame_ids or info.pts)}
        self._container, self.decode_note = _open_decoding(Path(info.path), decode)
        seek = dict(zip(info.keyframes, info.seek_points or info.keyframes, strict=True))
        # What to seek to for a keyframe, best first. MP4/MOV index their samples by decode time counted
        # before the edit list's shift, so a B-frame stream's shifted dts lands a whole GOP early (a correct
        # but slow seek: 1.2 s of 1080p decoding for a sample frame); its pts lands on it. MPEG-TS searches
        # by dts, and a pts seek can land past the keyframe. The reader notices a seek that landed past and
        # tries the next target, then the top.
        mov = any(n in ("mov", "mp4") for n in self._container.format.name.split(","))

        def targets(k: int) -> tuple[int, ...]:
            if info.frame_ids or seek[k] == k:
                return (seek[k],)
            return (k, seek[k]) if mov else (seek[k], k)

        keys = sorted((self._index[k], targets(k)) for k in info.keyframes if k in self._index)
        self._key_index = [i for i, _ in keys]
        self._key_targets = [t for _, t in keys]
        self.decode = decode if not self.decode_note else "cpu"
        self._stream = self._container.streams.video[0]
        self._thread_type = self._stream.thread_type = "AUTO"
        self._reformatter = VideoReformatter()  # one swscale context for the stream, not one per frame
        self.lost: set[int] = set()  # indices of frames asked for that did not decode

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._container.close()

    def _seek_targets(self, start: int) -> list[int]:
        """What to seek to for frame ``start``, best first: its last keyframe at or before ([]: from the top)."""
        if start == 0 or not self.info.seekable:
            return []
        k = bisect.bisect_right(self._key_index, start) - 1
        return list(self._key_targets[k]) if k >= 0 else []

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
        """Yield the frames ``start <= index < stop`` that decode, in order (see :attr:`lost`)."""
        for idx, frame in self.decoded(start, stop):
            yield Frame(self.to_rgb(frame), idx, frame.pts, self.info.time_base, self.info.durations[idx])

    def decoded(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """Like :meth:`frames` but yields (index, the decoder's own frame), for pass-through copies. The
        frame's pts is the presentation time :attr:`VideoInfo.pts` gives it."""
        stop = self.info.frame_count if stop is None else stop
        if not 0 <= start <= stop <= self.info.frame_count:
            raise ValueError(f"frame range {start}..{stop} outside 0..{self.info.frame_count}")
        if start == stop:
            return
        targets = self._seek_targets(start)
        seek = targets.pop(0) if targets else None
        while True:
            self._next = start
            try:
                yield from self._range(seek, start, stop)
                return
            except _SeekMissed:  # the demuxer landed past our keyframe: the next target, then the top
                if seek is None:
                    raise
                seek = targets.pop(0) if targets else None
            except _Redecode:  # go on from the first frame not yet given, one frame in flight at a time
                log.debug("%s: damaged data under frame threads: decoding on with slice threads",
                          self.info.path)
                self._reopen("SLICE")
                start = self._next
                targets = self._seek_targets(start)
                seek = targets.pop(0) if targets else None

    def passthrough_ok(self, pix_fmt: str) -> bool:
        """Whether decoded frames can go to an encoder of ``pix_fmt`` untouched (no RGB round trip)."""
        i = self.info
        return i.rotation == 0 and i.pix_fmt == pix_fmt and i.width % 2 == 0 and i.height % 2 == 0

    def _range(self, seek_pts: int | None, start: int, stop: int) -> Iterator[tuple[int, av.VideoFrame]]:
        want = start
        restamp = bool(self.info.frame_ids) or not self.info.seekable
        for count, frame in enumerate(self._decode_from(seek_pts)):
            idx = self._index.get(frame.pts) if self.info.seekable else count
            if idx is None or idx < want:
                continue
            if idx > want:
                if want == start and seek_pts is not None:
                    raise _SeekMissed
                self._on_bad_packet()  # frames skipped: damaged data, which frame threads may hide
                self.lost.update(range(want, min(idx, stop)))  # the decoder skipped them: damaged packets
                if idx >= stop:
                    return
            if frame.format.name != self.info.pix_fmt and self.decode != "cpu":  # NV12/P010 from the device
                frame = _as_stream_format(frame, self.info.pix_fmt)
            if restamp:
                frame.pts = self.info.pts[idx]
            yield idx, frame
            want = self._next = idx + 1
            if want == stop:
                return
        if want == start and seek_pts is not None:  # nothing came after the seek: try again from the top
            raise _SeekMissed
        if want < stop:
            self._on_bad_packet()
        self.lost.update(range(want, stop))

    def _decode_from(self, seek_pts: int | None) -> Iterator[av.VideoFrame]:
        try:
            self._container.seek(seek_pts if seek_pts is not None else 0, stream=self._stream, backward=True,
                                 any_frame=False)
        except av.error.FFmpegError:
            if seek_pts is not None:
                raise _SeekMissed from None
            self._reopen()  # a raw stream FFmpeg cannot seek in: start it again
        yield from decode_tolerant(self._container, self._stream, self._on_bad_packet)

    def _on_bad_packet(self) -> None:
        """Damaged data: with frame threads, the frames around it that come out depend on the threads' timing
        (a good keyframe held in flight was seen dropped), and a damaged packet can pass without an error,
        its neighbours silently gone. Decode on with slice threads, as a single thread would, so a damaged
        file gives FFmpeg's frames, the same on every run and machine. Intact files never get here."""
        if self._thread_type != "SLICE":
            raise _Redecode

    def _reopen(self, thread_type: str | None = None) -> None:
        self._thread_type = thread_type or self._thread_type
        self._container.close()
        self._container, _ = _open_decoding(Path(self.info.path), self.decode)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = self._thread_type

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
        """The frame shown at ``seconds`` (the last one starting at or before it; where that one does not
        decode, the next that does)."""
        t = Fraction(seconds).limit_denominator(1_000_000) / self.info.time_base + self.info.pts[0]
        idx = int(np.searchsorted(np.asarray(self.info.pts), t, side="right")) - 1
        idx = min(max(idx, 0), self.info.frame_count - 1)
        frame = next(self.frames(idx), None)
        if frame is None:
            raise UnsupportedVideoError(f"{self.info.path}: no frame decodes at or after {seconds:g} s "
                                        "(damaged input)")
        return frame
