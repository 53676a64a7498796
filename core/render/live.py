"""What a running render shows before it is done: its latest finished frame, refreshed every few seconds, and
the part of the output already finished (the chunks done from the start), playable and keepable.

Why here and this way: users of render tools ask for "preview while rendering / partial output on abort" right
after queue persistence and resume. The frame is written by the encoder's side of each chunk (whatever process
runs it) as a small JPEG in the job's work folder, at most every :data:`EVERY_S` seconds: one downscale and one
JPEG encode, well under 1 % of a render's time (``python -m scripts.bench --only live`` measures it). The
finished part needs nothing new: the checkpoint already lists the chunks that are done, and the stitch that
publishes a render joins any prefix of them with the source's audio, cut at the prefix's end.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

#: seconds between two live frames of one chunk (``VP_LIVE_EVERY`` overrides it, e.g. for tests)
EVERY_S = 2.0
#: width of the live frame (px): a browser column, not the render's size
WIDTH = 640
LIVE_NAME, LIVE_INFO = "live.jpg", "live.json"
#: the finished part's preview in the work folder, rebuilt when more chunks are done
PREVIEW_NAME = "finished.mp4"


def every_s() -> float:
    try:
        return max(0.05, float(os.environ.get("VP_LIVE_EVERY", EVERY_S)))
    except ValueError:
        return EVERY_S


class LiveFrame:
    """Writes the latest frame a chunk encoded to ``folder/live.jpg`` (and its time to ``live.json``) at most
    every ``every`` seconds. Best effort: a preview that cannot be written (a full disk) is skipped silently, the
    render goes on."""

    def __init__(self, folder: str | Path, offset: int, time_base: Fraction, every: float | None = None) -> None:
        self.folder, self.offset, self.time_base = Path(folder), offset, time_base
        self.every = every_s() if every is None else every
        self._next = time.monotonic()  # the chunk's first frame is shown at once
        self.saved = 0

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def offer(self, rgb: np.ndarray, pts: int) -> None:
        """``rgb``: (H, W, 3) uint8 RGB just encoded at chunk-relative ``pts``; saved when one is due."""
        if not self.due():
            return
        self._next = time.monotonic() + self.every
        with contextlib.suppress(OSError, cv2.error):
            h, w = rgb.shape[:2]
            small = rgb if w <= WIDTH else cv2.resize(rgb, (WIDTH, max(2, round(h * WIDTH / w))),
                                                      interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 82])
            if ok:
                seconds = float((pts + self.offset) * self.time_base)
                _replace(self.folder / LIVE_NAME, jpeg.tobytes())
                _replace(self.folder / LIVE_INFO, json.dumps({"seconds": round(seconds, 3),
                                                              "written": time.time()}).encode())
                self.saved += 1


def _replace(final: Path, data: bytes) -> None:
    """Write then rename (a reader never sees half a JPEG); no fsync: a lost preview costs nothing."""
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, final)


class Watched:
    """A chunk's writer that also offers what it encodes to a :class:`LiveFrame`: every write path the chunk
    uses (RGB, RGBX rows of a table style, decoded frames copied as they are) goes through here."""

    def __init__(self, writer: Any, live: LiveFrame) -> None:
        self._writer, self.live = writer, live

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        self._writer.write(rgb, pts)
        self.live.offer(rgb, pts)

    def write_rgbx(self, rgbx: np.ndarray, pts: int) -> None:
        self._writer.write_rgbx(rgbx, pts)
        if self.live.due():
            self.live.offer(np.ascontiguousarray(rgbx[..., :3]), pts)

    def write_frame(self, frame: Any, pts: int) -> None:
        self._writer.write_frame(frame, pts)
        if self.live.due():
            self.live.offer(frame.to_ndarray(format="rgb24"), pts)


@dataclass(frozen=True)
class Latest:
    """The live frame: JPEG bytes, its time in the video (s) and how long ago it was written (s)."""

    jpeg: bytes
    seconds: float
    age_s: float


def latest(folder: str | Path) -> Latest | None:
    """The job's live frame, or None before its first one (or once the work folder is gone)."""
    folder = Path(folder)
    try:
        jpeg = (folder / LIVE_NAME).read_bytes()
        info = json.loads((folder / LIVE_INFO).read_text())
    except (OSError, ValueError):
        return None
    return Latest(jpeg, float(info.get("seconds", 0.0)), max(0.0, time.time() - float(info.get("written", 0.0))))


@dataclass(frozen=True)
class Finished:
    """The chunks done from the start of the plan: their files with pts offsets, their frames, the frame index
    where the next chunk begins (where the finished part ends; -1 when every chunk is done) and the plan's."""

    files: list[tuple[Path, int]]
    frames: int
    end_frame: int
    total_frames: int


def finished(folder: str | Path) -> Finished | None:
    """The finished prefix of the render in ``folder`` (from its checkpoint), or None when no chunk from the
    start is done yet. Chunks done further on (parallel workers) wait until the gap before them is filled."""
    folder = Path(folder)
    try:
        data = json.loads((folder / "checkpoint.json").read_text())
        plan = sorted((list(map(int, row)) for row in data.get("plan", [])), key=lambda r: r[1])
        done = {int(k): v for k, v in data.get("done", {}).items()}
    except (OSError, ValueError, TypeError):
        return None
    files: list[tuple[Path, int]] = []
    frames, end = 0, None
    for cid, _start, _stop, *_ in plan:
        rec = done.get(cid)
        if rec is None:
            break
        if rec.get("frames"):
            path = folder / rec["file"]
            if not path.is_file():
                break
            files.append((path, int(rec["pts_offset"])))
            frames += int(rec["frames"])
        end = cid
    if not files or end is None:
        return None
    total = max((row[2] for row in plan), default=0)
    nxt = next((row for row in plan if row[0] > end), None)
    return Finished(files, frames, -1 if nxt is None else nxt[1], total)


def finished_seconds(part: Finished, info: Any) -> float:
    """Where the finished part ends in the source's time (s from its first frame)."""
    pts = info.pts
    if part.end_frame < 0 or part.end_frame >= len(pts):
        return float(info.duration)
    return float((pts[part.end_frame] - pts[0]) * info.time_base)


def write_finished(part: Finished, source: str | Path, out: str | Path, *, audio: str = "all",
                   subtitles: str = "all") -> Path:
    """The finished part as a playable file at ``out`` (written under a temp name, renamed when whole): the
    chunks stitched as a render publishes them, with the source's audio and subtitles cut where the part ends.
    ``out``'s extension picks the container (as a render's output)."""
    import av

    from core import atomic
    from core.video.probe import OUTPUT_FORMATS, probe
    from core.video.stitch import stitch

    out = Path(out)
    info = probe(source)
    end = finished_seconds(part, info)
    whole = atomic.temp_path(out.with_name(f"{out.stem}.whole{out.suffix}"))
    try:
        stitch(part.files, Path(source), info, whole, audio=audio, subtitles=subtitles)
        with atomic.atomic_path(out) as tmp, av.open(str(whole)) as src, \
                av.open(str(tmp), "w", format=OUTPUT_FORMATS[out.suffix.lower()]) as dst:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams
                       if s.type in ("video", "audio", "subtitle")}
            start = float(info.pts[0] * info.time_base)
            for packet in src.demux(*[s for s in src.streams if s.index in streams]):
                if packet.dts is None and packet.pts is None:
                    continue  # a demuxer's flush packet
                t = packet.pts if packet.pts is not None else packet.dts
                if packet.stream.type != "video" and float(t * packet.time_base) - start >= end:
                    continue  # the sound and titles past the finished picture
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    finally:
        whole.unlink(missing_ok=True)
    return out


def partial_path(output: str | Path) -> Path:
    """Where a cancelled render's finished part is kept: ``<output>_partial<ext>`` beside the output, then
    ``_partial_2``... (never over an earlier one, never the output's own name: a partial must not look
    finished). ``<ext>`` is the chunks' container: the output's own, .mov for MXF and image sequences."""
    from core.video.writer import chunk_suffix

    out, ext = Path(output), chunk_suffix(output)
    stem = out.stem if out.suffix.lower() == ext or out.suffix.lower() in (".mxf",) else out.name
    path, n = out.with_name(f"{stem}_partial{ext}"), 1
    while path.exists():
        n += 1
        path = out.with_name(f"{stem}_partial_{n}{ext}")
    return path


def keep_partial(folder: str | Path, source: str | Path, output: str | Path, *, audio: str = "all",
                 subtitles: str = "all") -> tuple[Path, Finished] | None:
    """Write the render's finished part beside its output (:func:`partial_path`); None when no chunk from the
    start is finished yet (nothing playable to keep)."""
    part = finished(folder)
    if part is None:
        return None
    return write_finished(part, source, partial_path(output), audio=audio, subtitles=subtitles), part
