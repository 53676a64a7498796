"""One render: check inputs, analyse once, plan chunks, render them in worker processes, stitch, publish.

Numbered steps (see :func:`render`):
  1. check the input and output paths (cheap, in this process);
  2. analyse the input in a worker (probe + style analysis; a corrupt file can crash only the worker);
  3. plan chunks at keyframes near ``chunk_seconds``; every frame in exactly one chunk;
  4. render the chunks not already in the checkpoint, each to its own file, recorded as it finishes;
  5. stitch the chunks by stream copy, add the source audio once, and only then publish atomically;
  6. keep the job's record: ``$VP_HOME/renders/<job hash>/`` with ``job.json``, ``metrics.jsonl`` (per
     measured frame, see :mod:`core.quality.metrics`) and ``summary.json`` (mean, p95, per shot), and append the
     render to the history the ETA model learns from (:func:`core.render.cost.record_render`).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import heapq
import itertools
import json
import logging
import math
import os
import shutil
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, color
from core.disk import disk_full_guard
from core.errors import ConfigError, OutputError, RenderError, StudioError, UnsupportedVideoError
from core.paths import studio_home
from core.presets import TemporalConfig
from core.quality.metrics import FrameMetrics, MetricsConfig, MetricsMeter, summarize, write_jsonl
from core.video.probe import OUTPUT_FORMATS, VideoInfo, check_input_file, probe
from core.video.reader import DECODERS, Reader
from core.video.stitch import container_holds, stitch
from core.video.writer import Writer, resolve_codec
from stylizers import Stylizer, get_style

from . import stages
from .checkpoint import Checkpoint
from .pool import LocalPool, default_workers, report_progress
from .spec import JobSpec
from .temporal import FrameFeatures, Stabiliser, cut_distance, frame_features

log = logging.getLogger(__name__)

#: Metrics measured while rendering: every 4th frame (with its predecessor, for the temporal metrics) on a
#: 320 px copy, ~5 ms a 720p frame on average, within the 15 % budget of a classical style's render.
#: The per-pixel fast paths (identity copy, LUT-only table) are not measured: measuring would cost more
#: than the render; ``python -m scripts.cli metrics IN OUT`` measures any output afterwards.
RENDER_METRICS = MetricsConfig(every=4)


@dataclass(frozen=True)
class Analysis:
    """The once-per-job pass: the probe and the style's shared state (e.g. the cartoon palette)."""

    info: VideoInfo
    shared: dict[str, Any]


@dataclass(frozen=True)
class Chunk:
    """Frames ``start <= i < stop`` are rendered; ``preroll`` frames before ``start`` only warm the state."""

    id: int
    start: int
    stop: int
    preroll: int
    carry: bool = False  # starts from the temporal state chunk ``id - 1`` saved (:func:`state_file`), not cold

    @property
    def frames(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work for an executor: plain picklable values only."""

    spec: JobSpec
    analysis: Analysis
    chunk: Chunk
    work_dir: str
    pipelined: bool = True  # decode, process and encode overlap in threads (same bytes either way)
    clock: Callable[[], float] = time.perf_counter  # what the stage times are measured with
    threads: int = 1  # frames prepared at once (the style, the motion measure) when pipelined
    keep_state: bool = False  # save the temporal state at the end for the next chunk, which carries it
    decode: str = "cpu"  # where frames decode: "cpu", or "cuda" (NVDEC where it opens; the same frames)


@dataclass(frozen=True)
class RenderResult:
    output: str
    frames: int
    duration: float
    wall_seconds: float
    chunks: int
    reused_chunks: tuple[int, ...]
    codec: str
    size: tuple[int, int]
    padded: bool
    cuts: tuple[int, ...]
    job_hash: str
    record: str = ""  # the job's record folder (job.json, metrics.jsonl, summary.json, perf.json)
    stages: dict[str, Any] | None = None  # the rendered chunks' merged stage times (core.render.stages.merge)
    decode: str = "cpu"  # where this run's chunks decoded: "cuda" only when every one of them did
    decode_note: str = ""  # why a chunk asked to decode on a device decoded on the CPU ("" when none did)
    lost_frames: int = 0  # frames of the input that did not decode (damaged input): not in the output

    @property
    def metrics(self) -> str:
        return str(Path(self.record) / "metrics.jsonl") if self.record else ""

    @property
    def summary_path(self) -> str:
        return str(Path(self.record) / "summary.json") if self.record else ""

    @property
    def fps(self) -> float:
        return self.frames / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def bottleneck(self) -> stages.Bottleneck | None:
        """Where this render's time went, per frame and stage, and what would speed it up."""
        return stages.bottleneck(self.stages or {})

    def summary(self) -> str:
        pad = " (odd size padded to even)" if self.padded else ""
        reuse = f", {len(self.reused_chunks)}/{self.chunks} chunks reused" if self.reused_chunks else ""
        dec = f", decoded on {self.decode}" if self.decode != "cpu" else ""
        fell = f", decoded on the CPU ({self.decode_note})" if self.decode_note else ""
        lost = (f", {self.lost_frames} of {self.frames + self.lost_frames} input frames lost (damaged input, "
                "not decodable)") if self.lost_frames else ""
        return (f"rendered {self.frames} frames ({self.duration:.2f} s of video) in {self.wall_seconds:.1f} s, "
                f"{self.fps:.1f} fps, {self.codec} {self.size[0]}x{self.size[1]}{pad}{reuse}{dec}{fell}{lost} -> "
                f"{self.output}")


# ---------------------------------------------------------------------------------------------- step 1


def check_paths(spec: JobSpec) -> None:
    """Input exists and is a non-empty file; output is a writable path of a supported container."""
    src, out = Path(spec.input), Path(spec.output)
    check_input_file(src)
    fmt = OUTPUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise OutputError(f"{out}: unsupported output container {out.suffix or '(none)'!r} "
                          f"(use {', '.join(OUTPUT_FORMATS)})")
    if out.exists() and out.resolve() == src.resolve():
        raise OutputError(f"{out}: output path is the input file; choose another name")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory; give a file name like {out / 'render.mp4'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe_file = atomic.temp_path(out, ".write-test")
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write to folder {out.parent} ({exc.strerror or exc})") from None
    codec = resolve_codec(spec.preset.encoder)
    if not container_holds(fmt, codec):
        raise ConfigError(f"{out}: a {out.suffix} file cannot hold {codec} video; use .mkv")


# ---------------------------------------------------------------------------------------------- step 2


def sample_indices(info: VideoInfo, k: int) -> list[int]:
    """k frames spread over the clip; keyframes when there are enough, since they decode alone."""
    if k <= 0:
        return []
    keys = info.keyframe_indices
    pool = keys if len(keys) >= k else range(info.frame_count)
    picks = np.linspace(0, len(pool) - 1, num=min(k, len(pool))).round().astype(int)
    return sorted({pool[i] for i in picks})


def read_samples(info: VideoInfo, indices: list[int]) -> list[np.ndarray]:
    """Decode the frames at ``indices`` (ascending): from each one's keyframe, and only those turned into RGB.

    Samples after the same keyframe share one forward decode; the next keyframe starts a new one. On a clip
    with sparse keyframes (a 900-frame 720p shot with 5) this decodes about half the clip instead of all of
    it, and converts 8 frames instead of every one: the cartoon analysis there went from 1.8 s to 1.0 s.
    """
    if not indices:
        return []
    keys = info.keyframe_indices
    groups: list[list[int]] = []
    last_key = None
    for i in indices:
        key = keys[bisect.bisect_right(keys, i) - 1] if keys and keys[0] <= i else None
        if groups and key == last_key:
            groups[-1].append(i)
        else:
            groups.append([i])
        last_key = key
    out = []
    with Reader(info) as r:
        for group in groups:
            want = set(group)
            out += [r.to_rgb(raw) for i, raw in r.decoded(group[0], group[-1] + 1) if i in want]
    return out


def analyze_job(spec: JobSpec) -> Analysis:
    """Probe the input and run the style's job-wide analysis. Runs in a worker process."""
    info = probe(spec.input)
    cls = get_style(spec.style)
    cls.check_size(spec.input, info.width, info.height)  # tiny frames: one line, before any frame is read
    samples = read_samples(info, sample_indices(info, cls.analysis_samples))
    return Analysis(info=info, shared=cls.analyze(spec.params, samples))


# ---------------------------------------------------------------------------------------------- step 3


#: seconds of video per lane of a style with temporal state (see :func:`plan_chunks`). Lanes let such a
#: style render on several workers at once, but each lane after the first pays the stabiliser's pre-roll
#: (43 frames in the balanced preset) wherever it runs, one worker included, where lanes run one after the
#: other. A lane per 90 s costs a clip under 3 minutes nothing (one lane: on 2 cores the plan it had) and
#: a longer one at most 43 frames per 90 s: 1.6 % of a 30-fps clip's frames, ~1.2 % of its work (pre-roll
#: frames are not encoded); 2.0 % and ~1.5 % at 24 fps.
LANE_SECONDS = 90.0

#: the chunks a stateless plan is balanced for running at once: an even number of chunks, sized so that
#: two workers (a 2-core machine's default) end together; one worker, or four, on a plan of four, do too.
PLANNED_AT_ONCE = 2


def plan_chunks(info: VideoInfo, chunk_seconds: float, preroll: int,
                lane_seconds: float | None = None) -> list[Chunk]:
    """Split the clip into chunks of about ``chunk_seconds``: a function of the clip and the settings only.

    The plan fixes where every chunk starts, its pre-roll and the state it carries, and so the output's
    bytes; it never depends on how many workers render it, so 1, 2 or 4 local workers, with or without the
    pipeline, and a Dask cluster give the same file. Workers decide only when each chunk runs.

    Without temporal state (``preroll`` 0) chunks are independent: an even number of them, at least
    ``duration / chunk_seconds`` and about a second long at least, of equal work for
    :data:`PLANNED_AT_ONCE` workers (:func:`_balanced`).

    With state, the clip is first cut into *lanes* of consecutive chunks, one per ``lane_seconds`` of video
    (:data:`LANE_SECONDS` by default), of equal work. A lane's first chunk pays ``preroll`` frames it does
    not keep (43 in the balanced preset's flow mode) to warm the state; every later chunk of the lane
    *carries* it: it starts from the state its predecessor saved when it finished, so it costs no extra frame
    and its frames equal a single pass's, bit for bit. A lane's chunks render one after the other; lanes
    run at once where there are workers for them, else one after the other. Within a lane, chunks start at
    a keyframe when one lies within a quarter chunk (:func:`_split`).

    Away from keyframes a chunk still starts anywhere (its reader decodes from the keyframe before), so
    clips with sparse keyframes still spread over the workers.
    """
    tb, t0 = info.time_base, info.pts[0]
    times = [float((p - t0) * tb) for p in info.pts]
    times.append(times[-1] + float(info.durations[-1] * tb))  # where the last frame ends
    n_all = info.frame_count
    seconds = max(1, round(info.duration))  # pieces that run at once are a second long at least, about
    if not info.seekable:  # every chunk would decode from the top (a raw stream): one pass, not n^2 decoding
        return [Chunk(id=0, start=0, stop=n_all, preroll=0)]
    if preroll <= 0:
        count = math.ceil(math.ceil(info.duration / chunk_seconds) / PLANNED_AT_ONCE) * PLANNED_AT_ONCE
        bounds = _balanced(info, 0, n_all, min(count, seconds), 0, at_once=PLANNED_AT_ONCE)
        return [Chunk(id=i, start=a, stop=b, preroll=0) for i, (a, b) in enumerate(itertools.pairwise(bounds))]
    lanes = max(1, int(info.duration // (lane_seconds or LANE_SECONDS)))
    lane_bounds = _balanced(info, 0, n_all, lanes, preroll) if lanes > 1 else [0, n_all]
    chunks: list[Chunk] = []
    for a, b in itertools.pairwise(lane_bounds):
        inner = _split(info, times, a, b, chunk_seconds)
        for j, (s0, s1) in enumerate(itertools.pairwise(inner)):
            chunks.append(Chunk(id=len(chunks), start=s0, stop=s1, preroll=min(preroll, s0) if j == 0 else 0,
                                carry=j > 0))
    return chunks


#: a frame's decode as a share of its whole render (decode, stylize, temporal, encode): 720p on 2 cores,
#: comic 7 of 77 ms, cartoon 8 of 81, pencil 8 of 64 (``python -m scripts.bench --only stages``). A chunk
#: that starts between keyframes decodes, at this cost, the frames from the keyframe before.
DECODE_SHARE = 0.1


def _balanced(info: VideoInfo, first: int, stop: int, pieces: int, preroll: int, at_once: int = 0) -> list[int]:
    """Bounds of ``pieces`` pieces of frames ``first``..``stop``, ``at_once`` of them rendering at a time (all
    by default; each worker takes the next piece when its own is done), planned to end together. A piece's
    work: its frames, the ``preroll`` frames every piece after the first renders and drops, and the frames it
    decodes from the keyframe before its first (at :data:`DECODE_SHARE`).

    Pieces of the last round are sized so every worker ends at once, and do not move onto keyframes: the
    slowest sets the render's end, and lanes snapped to the keyframes of a 250-frame GOP had differed by 100
    frames (comic, 720p, 2 cores: a 7-s tail with one core idle), where the decode such a move saves is a
    tenth of that. A piece of an earlier round starts on the next keyframe when the frames that adds are
    fewer than the decode it saves: the last round makes up for it."""
    pieces = max(1, min(pieces, stop - first))
    at_once = min(at_once or pieces, pieces)
    keys = sorted(info.keyframe_indices)

    def skipped(i: int) -> int:  # frames decoded only to reach frame i
        k = bisect.bisect_right(keys, i) - 1
        return i - keys[k] if k >= 0 else i

    def cost_from(i: int) -> float:  # a piece's pre-roll and skipped decode when it starts at frame i
        return min(preroll, i) + DECODE_SHARE * skipped(i - min(preroll, i))

    gaps = [k2 - k1 for k1, k2 in itertools.pairwise([*keys, stop])] or [stop]
    reach = int(DECODE_SHARE * max(gaps)) + preroll + 2  # how far from the even share the best end can lie
    overhead = [0.0] * pieces  # each piece's pre-roll and skipped decode: first taken as none, then as planned
    for _ in range(2):
        bounds, paid, free = [first], [], [0.0] * at_once  # free: when each worker is next free, in frames
        for j in range(pieces):
            a = bounds[-1]
            paid.append(cost_from(a) if j else 0.0)
            start = heapq.heappop(free)  # the worker that takes piece j
            if j == pieces - 1:
                break
            left = pieces - j
            if left <= len(free) + 1:  # the last round: searched near the even share (decode jumps at keys)
                starts = [start, *sorted(free)[: left - 1]]  # when the workers that take the rest start
                mine, later = start - a + paid[j], sum(overhead[j + 2:]) + sum(starts[1:])
                even = round(a + (stop - a + paid[j] + sum(overhead[j + 1:]) + sum(starts)) / left - start - paid[j])
                even = max(a + 1, min(even, stop - left + 1))  # a worker free much earlier may want it all
                b = min(range(max(a + 1, even - reach), min(stop - left + 1, even + reach) + 1),
                        key=lambda e: max(mine + e, (stop - e + cost_from(e) + later) / (left - 1)))
            else:
                b = max(a + 1, min(round(a + (stop - a + paid[j] + sum(overhead[j + 1:])) / left - paid[j]),
                                   stop - (left - 1)))
                nxt = bisect.bisect_left(keys, b)
                if nxt < len(keys) and keys[nxt] - b <= DECODE_SHARE * skipped(b):
                    b = min(keys[nxt], stop - (left - 1))
            overhead[j + 1] = cost_from(b)
            bounds.append(b)
            heapq.heappush(free, start + b - a + paid[j])
        overhead = paid
        bounds.append(stop)
    return bounds


def _split(info: VideoInfo, times: list[float], first: int, stop: int, seconds: float) -> list[int]:
    """Frame bounds from frame ``first`` to ``stop``, about every ``seconds``, each at the nearest keyframe
    within a quarter piece (for chunks that run one after the other). ``times``: each frame's start in
    seconds, and the clip's end after the last."""
    key_idx = info.keyframe_indices
    end = times[stop]
    bounds = [first]
    while True:
        target = times[bounds[-1]] + seconds
        if target >= end - seconds / 4:
            break
        near = [i for i in key_idx if bounds[-1] < i < stop and abs(times[i] - target) <= seconds / 4]
        nxt = min(near, key=lambda i: abs(times[i] - target)) if near else int(np.searchsorted(times, target))
        if nxt <= bounds[-1] or nxt >= stop or end - times[nxt] < seconds / 4:  # a short tail joins the piece
            break
        bounds.append(nxt)
    bounds.append(stop)
    return bounds


# ---------------------------------------------------------------------------------------------- step 4

def chunk_file(chunk: Chunk, output: str) -> str:
    return f"chunk_{chunk.id:04d}{Path(output).suffix.lower()}"


def state_file(chunk_id: int) -> str:
    """Where chunk ``chunk_id`` leaves its temporal state for the chunk after it (see :class:`_Carry`)."""
    return f"state_{chunk_id:04d}.npz"


def render_chunk(task: ChunkTask) -> dict[str, Any]:
    """Decode (with pre-roll) -> stylize -> temporal -> encode one chunk to its own file, atomically.

    The stages overlap in threads (:mod:`core.render.stages`) unless ``task.pipelined`` is off; either way the
    bytes are the same. Returns the checkpoint record: file name, frame count, pts offset, cut indices,
    seconds spent, and the stages' busy and wait seconds.
    """
    t_start = time.perf_counter()
    measured: list[FrameMetrics] = []
    spec, info, chunk = task.spec, task.analysis.info, task.chunk
    stylizer = get_style(spec.style)(spec.params, task.analysis.shared)
    final = Path(task.work_dir) / chunk_file(chunk, spec.output)
    offset = info.pts[chunk.start]  # chunk files start at pts 0; the stitcher adds this back
    times = stages.StageTimes(task.clock)
    carry: _Carry | None = None
    with atomic.atomic_path(final) as tmp:
        with Reader(info, task.decode) as reader, Writer(tmp, width=info.width, height=info.height, fps=info.fps,
                                            time_base=info.time_base, color=info.color,
                                            encoder=spec.preset.encoder) as writer:
            table = _pixel_table(stylizer, spec.preset.temporal)
            if stylizer.passthrough and reader.passthrough_ok(writer.pix_fmt):
                flow, cut_frames = _copy_frames(reader, writer, chunk, offset)
            elif table is not None and reader.rgbx_ok():
                flow, cut_frames = _table_frames(reader, writer, chunk, offset, table)
            else:
                carry = _Carry(Stabiliser(spec.preset.temporal, enabled=type(stylizer).stabilise),
                               MetricsMeter(RENDER_METRICS))
                if chunk.carry:
                    carry.load(Path(task.work_dir) / state_file(chunk.id - 1), chunk.start - 1)
                flow, cut_frames = _style_frames(reader, writer, chunk, offset, stylizer, spec.preset.temporal,
                                                 carry, measured, times)
            stages.run(flow.source, flow.process, flow.sink, times, prepare=flow.prepare, threads=task.threads,
                       pipelined=task.pipelined, batch=flow.batch)
            written = writer.frames_written
            lost = sorted(i for i in reader.lost if chunk.start <= i < chunk.stop)  # pre-roll frames are not ours
            if task.keep_state and carry is not None:
                carry.save(Path(task.work_dir) / state_file(chunk.id), chunk.stop - 1)
        if written + len(lost) != chunk.frames:
            raise RenderError(f"{spec.input}: chunk {chunk.id} wrote {written} of {chunk.frames} frames "
                              f"({len(lost)} did not decode)")
    report_progress(chunk.id, written)
    times.frames = written
    record = {"file": final.name, "frames": written, "start": chunk.start, "stop": chunk.stop,
              "pts_offset": offset, "cuts": cut_frames, "seconds": round(time.perf_counter() - t_start, 3),
              "codec": writer.codec, "stages": times.to_json(), "decode": reader.decode}
    if reader.decode_note:
        record["decode_note"] = reader.decode_note
    if lost:
        record["lost"] = lost
        log.warning("%s: chunk %d: %d frames did not decode (damaged input); rendered the other %d", spec.input,
                    chunk.id, len(lost), written)
    if measured:
        record["metrics"] = write_jsonl(measured, final.with_name(f"metrics_{chunk.id:04d}.jsonl")).name
    if task.keep_state and carry is not None:
        record["state"] = state_file(chunk.id)
    return record


class _Carry:
    """A chunk's temporal state at a frame: the stabiliser's layers, the input frame's features (for the next
    frame's cut test and motion) and the metrics meter's kept frame. Saved when a chunk ends and loaded by the
    next chunk of its lane, which then renders exactly what a single pass would, without pre-roll."""

    def __init__(self, stab: Stabiliser, meter: MetricsMeter) -> None:
        self.stab, self.meter = stab, meter
        self.feats: FrameFeatures | None = None  # the last input frame's

    def save(self, path: Path, index: int) -> None:
        arrays: dict[str, np.ndarray] = {"index": np.array(index)}
        for group, state in (("stab", self.stab.state_dict()), ("meter", self.meter.state_dict()),
                             ("feats", self.feats._asdict() if self.feats is not None else {})):
            arrays.update({f"{group}.{k}": np.asarray(v) for k, v in state.items() if v is not None})
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    @staticmethod
    def _read(path: Path, index: int) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}  # reads every array: a damaged file fails here (CRC)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise RenderError(f"{path}: the state the chunk before left is unreadable ({exc})") from None
        if int(data.get("index", -1)) != index:
            raise RenderError(f"{path}: holds the state of frame {int(data.get('index', -1))}, not {index}")
        return data

    @classmethod
    def readable(cls, path: Path, index: int) -> bool:
        """Whether ``path`` holds a whole state saved at frame ``index`` (a resumed render checks before
        keeping the chunk that left it)."""
        try:
            cls._read(path, index)
        except RenderError:
            return False
        return True

    def load(self, path: Path, index: int) -> None:
        """The state saved at frame ``index``; a missing or foreign file is a render error (the chunk before
        must be rendered again), never a silently cold start."""
        data = self._read(path, index)
        group = {g: {k.split(".", 1)[1]: v for k, v in data.items() if k.startswith(g + ".")}
                 for g in ("stab", "meter", "feats")}
        self.stab.load_state_dict(group["stab"])
        self.meter.load_state_dict(group["meter"])
        f = group["feats"]
        self.feats = FrameFeatures(f["signature"], f.get("small")) if "signature" in f else None


@dataclass(frozen=True)
class Flow:
    """What a chunk path hands to :func:`core.render.stages.run`."""

    source: Iterable[Any]
    process: Callable[[Any], Any]
    sink: Callable[[Any], None]
    prepare: Callable[[Any], Any] | None = None
    batch: int = 1  # items ``prepare`` takes at once (then a list of them): the style's frames per call


def _writes(writer: Writer, write: Callable[[Any, int], None], chunk: Chunk) -> Callable[[Any], None]:
    """The encode stage: write one (pixels, pts) item, reporting progress every 8 frames."""
    def sink(item: tuple[Any, int]) -> None:
        write(*item)
        if writer.frames_written % 8 == 0:
            report_progress(chunk.id, writer.frames_written)
    return sink


def _copy_frames(reader: Reader, writer: Writer, chunk: Chunk, offset: int) -> tuple[Flow, list[int]]:
    """Identity fast path: decoded frames go to the encoder untouched (no RGB round trip, no state)."""
    source = ((raw, raw.pts - offset) for _, raw in reader.decoded(chunk.start, chunk.stop))
    return Flow(source, _same, _writes(writer, writer.write_frame, chunk)), []


def _same(item: Any) -> Any:
    return item


def _pixel_table(stylizer: Stylizer, temporal: TemporalConfig) -> np.ndarray | None:
    """The style's packed per-pixel table when the whole style is that lookup and nothing stabilises it.

    A style offers one as ``pixel_table`` (a ``core.color.pack_table`` array, or None), e.g. a LUT-only
    cinematic look; a style without the attribute never takes the table path.
    """
    table = getattr(stylizer, "pixel_table", None)
    if table is None or Stabiliser(temporal, enabled=type(stylizer).stabilise).active:
        return None
    return table


def _table_frames(reader: Reader, writer: Writer, chunk: Chunk, offset: int,
                  table: np.ndarray) -> tuple[Flow, list[int]]:
    """Per-pixel table fast path: the decoder's 4-byte RGBX pixels through the table to the encoder.

    The same pixels, and so the same bytes, as the frame-contract path (stylize -> RGB -> encoder), without
    its copies between 3- and 4-byte pixels (~1 ms a 720p frame). No state, so no pre-roll and no cuts.
    """
    source = ((reader.to_rgbx(raw), raw.pts - offset) for _, raw in reader.decoded(chunk.start, chunk.stop))

    def process(item: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
        return color.lookup_rgbx(table, item[0]), item[1]
    return Flow(source, process, _writes(writer, writer.write_rgbx, chunk)), []


def _style_frames(reader: Reader, writer: Writer, chunk: Chunk, offset: int, stylizer: Stylizer,
                  temporal: TemporalConfig, carry: _Carry, measured: list[FrameMetrics],
                  times: stages.StageTimes) -> tuple[Flow, list[int]]:
    """The frame contract path: RGB frames through the style and the temporal stage.

    Returns the flow and the list the cut indices land in as it runs. What depends on the input frames
    alone (the style, the cut measure and the motion between frames t-1 and t) is the prepare stage, which
    may run several frames at once; the stabiliser's blend, which needs the previous output, is the
    process stage, in order; the metrics are taken beside the encoder. ``meter`` sees every output frame
    (pre-roll included, so the chunk's first frames have temporal metrics) and is reset at cuts like the
    stabiliser; the chunk's own measured frames go to ``measured``. ``carry`` holds the stabiliser and the
    meter, loaded with the previous chunk's state for a carrying chunk, and keeps the last frame's features
    for the next. Stage parts are timed in ``times``: stylize and motion (prepare), temporal (process),
    measure (encode)."""
    stab, meter = carry.stab, carry.meter
    cut_frames: list[int] = []
    stateful = stab.active  # cuts only matter where there is temporal state to reset
    # pre-roll only warms temporal state; stylizers are pure in (frame, index), so without state it is skipped
    first = chunk.start - chunk.preroll if stateful else chunk.start

    def pairs() -> Iterator[tuple[Any, FrameFeatures | None, FrameFeatures | None]]:
        """Frames with their temporal features and the previous frame's, measured once, on this thread."""
        prev = carry.feats
        for frame in reader.frames(first, chunk.stop):
            feats = frame_features(frame.rgb, stab.needs_source) if stateful else None
            yield frame, prev, feats
            prev = carry.feats = feats

    def cut_motion(item: tuple[Any, FrameFeatures | None, FrameFeatures | None]) -> tuple[bool, Any]:
        frame, prev, feats = item
        with times.timed("motion"):
            cut = feats is not None and cut_distance(prev, feats) > temporal.cut_threshold
            return cut, None if cut or feats is None else stab.motion_between(prev, feats, frame.rgb.shape[:2])

    def prepare(item: tuple[Any, FrameFeatures | None, FrameFeatures | None]) -> tuple[Any, bool, Any]:
        cut, motion = cut_motion(item)
        with times.timed("stylize"):
            styled = stylizer.stylize(item[0].rgb, item[0].index)
        return styled, cut, motion

    def prepare_batch(items: list[tuple[Any, FrameFeatures | None, FrameFeatures | None]]) -> list[tuple[Any, ...]]:
        measures = [cut_motion(item) for item in items]
        with times.timed("stylize"):
            styled = stylizer.stylize_batch([it[0].rgb for it in items], [it[0].index for it in items])
        return [(st, cut, motion) for st, (cut, motion) in zip(styled, measures, strict=True)]

    def process(pair: tuple[tuple[Any, Any, Any], tuple[Any, bool, Any]]) -> tuple[Any, ...]:
        (frame, _, _), (styled, cut, motion) = pair
        with times.timed("temporal"):
            if cut:
                stab.reset()
                if frame.index >= chunk.start:
                    cut_frames.append(frame.index)
            out = stab.apply(styled, motion)
        return frame, out, cut

    def sink(item: tuple[Any, np.ndarray, bool]) -> None:
        frame, out, cut = item
        with times.timed("measure"):
            if cut:
                meter.reset()
            m = meter.update(frame.index, frame.rgb, out)
        if frame.index < chunk.start:
            return
        if m is not None:
            measured.append(m)
        writer.write(out, frame.pts - offset)
        if writer.frames_written % 8 == 0:
            report_progress(chunk.id, writer.frames_written)
    batch = stylizer.batch_size(reader.info.height, reader.info.width)
    return Flow(pairs(), process, sink, prepare_batch if batch > 1 else prepare, batch), cut_frames


def stage_costs(spec: JobSpec, frames: int | None = None) -> dict[str, Any]:
    """CPU seconds each stage of ``spec`` costs, measured here in one sequential pass over its first
    ``frames`` frames (all by default) with the process's CPU clock: decoder and encoder threads count,
    waiting does not. The machine's limit for the job is then ``cores / (total CPU seconds per frame)``.
    Writes nothing but a scratch file, removed afterwards."""
    import tempfile

    analysis = analyze_job(spec)
    n = analysis.info.frame_count if frames is None else min(frames, analysis.info.frame_count)
    with tempfile.TemporaryDirectory(prefix="vp-costs-") as tmp:
        task = ChunkTask(spec, analysis, Chunk(0, 0, n, 0), tmp, pipelined=False, clock=time.process_time)
        return render_chunk(task)["stages"]


# ---------------------------------------------------------------------------------------------- driver


#: cores one chunk of a style with temporal state keeps busy: its prepare pool on two threads, with the
#: in-order blend, the decoder and the encoder beside them. Each lane of such chunks pays ``preroll`` frames
#: (43 in the balanced preset) to warm its state, so fewer, pipelined lanes beat one per core: pencil at 720p
#: on 2 cores ran 31 fps this way vs 29 fps as 2 one-loop chunks (comic: 20.5 vs 20.3). A style without
#: state splits for free and is often encoder-bound (cinematic: 33 fps as 2 chunks, 25 as one): a chunk
#: per core. Measured by ``python -m scripts.bench --only stages``.
STAGE_CORES = 2


def chunks_at_once(spec: JobSpec, workers: int | None, executor: Executor | None) -> int:
    """How many chunks to render at the same time: ``workers`` when given; on a Dask cluster one per worker
    (the caller passes the cluster's count); locally one per :data:`STAGE_CORES` cores for a style with
    temporal state (each chunk then prepares its frames on that many threads), else one per core.

    This decides only when chunks run, never the plan (:func:`plan_chunks`), so it never changes a byte."""
    if workers:
        return workers
    if executor is not None:
        return 1
    cores = os.cpu_count() or 1
    stateful = Stabiliser(spec.preset.temporal, enabled=get_style(spec.style).stabilise).active
    return max(1, cores // STAGE_CORES) if stateful else cores


def pipeline_auto(chunks_at_once: int) -> bool:
    """Whether to overlap each chunk's stages in threads: only when the chunks running at once leave cores
    idle (a style with temporal state, one worker, or fewer chunks than cores). When every core already
    renders a chunk, the stage threads add only switching: on 2 cores with 2 chunks at once, pipelined and
    one-loop chunks ran within 3 % of each other, the pipelined ones a little behind.
    """
    return chunks_at_once < (os.cpu_count() or 1)


def work_root() -> Path:
    return studio_home() / "work"


def _remove_superseded(root: Path, output: str, keep: Path) -> None:
    """Drop work folders of earlier, different jobs for the same output: they can never resume now."""
    if not root.is_dir():
        return
    for ck in root.glob("*/checkpoint.json"):
        if ck.parent == keep:
            continue
        with contextlib.suppress(OSError, ValueError):
            if json.loads(ck.read_text()).get("output") == output:
                shutil.rmtree(ck.parent, ignore_errors=True)


ProgressFn = Callable[[int, int], None]


@contextlib.contextmanager
def _work_lock(job_hash: str) -> Iterator[None]:
    """One render per work folder at a time, across processes: the same job sent to two outputs shares
    a work folder (its hash leaves the output out), and one must not delete it while the other stitches.
    The lock file sits beside the folder, so removing the folder never removes a lock someone waits on.

    Nothing piles up: the holder removes the lock file before it lets go (a waiter then finds the file it
    locked gone from the path and locks the new one, :func:`_lock_file`), and once held, lock files nobody
    holds (left by a killed render) and the temp files a killed run left in the job's work folder are
    removed."""
    root = work_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f".{job_hash}.lock"
    fh = _lock_file(path, wait=True)
    try:
        _remove_free_locks(root)
        atomic.remove_stale(root / job_hash)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still held: nobody else holds this file, and whoever waits on it will look again
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _lock_file(path: Path, wait: bool) -> Any:
    """The open, exclusively locked lock file at ``path`` (created when ``wait``); None when ``wait`` is off
    and someone holds it or it is gone. A file locked after its holder removed it is not the lock any more
    (the path names a new file, or none): then the one now at the path is locked instead."""
    while True:
        try:
            fh = open(path, "a" if wait else "r")  # noqa: SIM115 (held beyond this function)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            held, now = os.fstat(fh.fileno()), os.stat(path)
            if (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
                return fh
        except (BlockingIOError, FileNotFoundError):
            pass
        except BaseException:
            fh.close()
            raise
        fh.close()
        if not wait:
            return None


def _remove_free_locks(root: Path) -> None:
    """Remove the lock files in ``root`` that nobody holds (each locked first, so none is removed under a
    render that holds it or is about to)."""
    for path in root.glob(".*.lock"):
        fh = _lock_file(path, wait=False)
        if fh is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            fh.close()


def render(spec: JobSpec, *, workers: int | None = None, executor: Executor | None = None,
           on_progress: ProgressFn | None = None, on_start: Callable[[int, int], None] | None = None,
           keep_work: bool = False, pipelined: bool | None = None, decode: str = "cpu") -> RenderResult:
    """Render ``spec`` to ``spec.output``; resumes from the job's checkpoint when one exists.

    ``executor``: any ``concurrent.futures.Executor`` (e.g. a Dask client's); by default a local
    process pool of ``workers``. ``on_start(total_frames, frames_already_done)`` and
    ``on_progress(frames_done, total_frames)`` drive progress displays. ``pipelined``: each chunk's
    decode, process and encode stages overlap in threads (False: one loop per chunk; the same bytes);
    None (auto) pipelines when the chunks running at once leave cores idle (see :func:`pipeline_auto`).
    ``decode``: "cuda" decodes on the GPU where it opens (each chunk falls back to the CPU with the reason
    in its checkpoint record otherwise); the frames, and so the output, are those of a CPU decode.
    """
    if decode not in DECODERS:
        raise ConfigError(f"decode: {decode!r} is not one of {', '.join(DECODERS)}")
    check_paths(spec)  # step 1
    # a full disk anywhere (work folder, checkpoint, output) is one DiskFullError, its partial files removed
    with disk_full_guard(work_root(), Path(spec.input).stat().st_size,
                         partials=(work_root() / spec.job_hash(),)), _work_lock(spec.job_hash()):
        return _render(spec, workers, executor, on_progress, on_start, keep_work, pipelined, decode)


def _render(spec: JobSpec, workers: int | None, executor: Executor | None, on_progress: ProgressFn | None,
            on_start: Callable[[int, int], None] | None, keep_work: bool, pipelined: bool | None,
            decode: str = "cpu") -> RenderResult:
    t0 = time.perf_counter()
    wanted = chunks_at_once(spec, workers, executor)
    pool = None if executor is not None else LocalPool(wanted)  # a process per chunk at once, none idle
    ex = executor if executor is not None else pool.executor
    failed = True
    try:
        analysis = _result(ex.submit(analyze_job, spec), spec, "analysis")  # step 2
        info = analysis.info
        log.info("%s: analysed in %.2f s (%d frames, %s)", spec.input, time.perf_counter() - t0, info.frame_count,
                 info.codec)
        job_hash = spec.job_hash()
        work_dir = work_root() / job_hash
        work_dir.mkdir(parents=True, exist_ok=True)
        _remove_superseded(work_root(), str(Path(spec.output).resolve()), work_dir)
        ckpt = Checkpoint.open(work_dir, job_hash, str(Path(spec.output).resolve()))
        if ckpt.plan:  # step 3: a resumed job keeps its plan, whatever the worker count is now
            chunks = [Chunk(*c[:4], carry=bool(c[4:5] and c[4])) for c in ckpt.plan]
        if not ckpt.plan:
            stateful = Stabiliser(spec.preset.temporal, enabled=get_style(spec.style).stabilise).active
            preroll = spec.preset.temporal.preroll_frames() if stateful else 0  # no state: no pre-roll to pay
            chunks = plan_chunks(info, spec.preset.chunk_seconds, preroll)  # the same for any worker count
            ckpt.plan = [[c.id, c.start, c.stop, c.preroll, int(c.carry)] for c in chunks]
            ckpt.save()
        plan_ids = {c.id for c in chunks}
        # a chunk file of another container (the same job sent to .mkv, then to .mp4) is not reused
        same_kind = {c.id for c in chunks if ckpt.done.get(c.id, {}).get("file") == chunk_file(c, spec.output)}
        reused = _reusable(chunks, ckpt.verified() & plan_ids & same_kind, work_dir)
        ckpt.done = {k: v for k, v in ckpt.done.items() if k in reused}
        todo = [c for c in chunks if c.id not in reused]
        already = sum(c.frames for c in chunks if c.id in reused)
        if on_start:
            on_start(info.frame_count, already)
        todo_ids = {c.id for c in todo}
        lanes = sum(1 for c in todo if not c.carry or c.id - 1 not in todo_ids)  # chunks that can run at once
        at_once = max(1, min(lanes, wanted))
        if pipelined is None:
            pipelined = pipeline_auto(at_once)
        threads = max(1, (os.cpu_count() or 1) // at_once) if pipelined else 1
        log.info("%d chunks planned, %d to render, stages %s", len(chunks), len(todo),
                 f"pipelined, {threads} preparing" if pipelined else "sequential")
        _run_chunks(ex, pool, spec, analysis, todo, work_dir, ckpt, already, on_progress, pipelined,
                    threads, at_once, decode)  # step 4
        log.info("chunks done at %.2f s", time.perf_counter() - t0)
        lost = sum(len(ckpt.done[c.id].get("lost", ())) for c in chunks)
        if lost == info.frame_count:
            raise UnsupportedVideoError(f"{spec.input}: no frame decodes (damaged input)")
        # a chunk whose every frame was lost has nothing to give
        files = [(work_dir / ckpt.done[c.id]["file"], ckpt.done[c.id]["pts_offset"]) for c in chunks
                 if ckpt.done[c.id]["frames"]]
        out = Path(spec.output)
        with disk_full_guard(out.parent, sum(f.stat().st_size for f, _ in files) + Path(spec.input).stat().st_size), \
                atomic.atomic_path(out) as tmp:  # step 5
            stitch(files, Path(spec.input), info, tmp, audio=spec.audio, subtitles=spec.subtitles)
        log.info("stitched and published at %.2f s", time.perf_counter() - t0)
        failed = False
    finally:
        if pool is not None:
            pool.close(kill=failed)
    cuts = tuple(sorted(i for rec in ckpt.done.values() for i in rec.get("cuts", [])))
    result = RenderResult(
        output=str(out), frames=info.frame_count - lost, lost_frames=lost + info.undecodable, duration=info.duration,
        wall_seconds=time.perf_counter() - t0,
        chunks=len(chunks), reused_chunks=reused, codec=ckpt.done[chunks[0].id].get("codec", "?"),
        size=(info.width + info.width % 2, info.height + info.height % 2),
        padded=bool(info.width % 2 or info.height % 2), cuts=cuts, job_hash=job_hash,
        record=str(record_root() / job_hash),
        stages=stages.merge(ckpt.done[c.id]["stages"] for c in todo if "stages" in ckpt.done[c.id]),
        decode=decode if todo and all(ckpt.done[c.id].get("decode") == decode for c in todo) else "cpu",
        decode_note=next((n for c in todo if (n := ckpt.done[c.id].get("decode_note"))), ""))
    _keep_record(spec, result, [work_dir / ckpt.done[c.id]["metrics"] for c in chunks if "metrics" in ckpt.done[c.id]],
                 workers or default_workers(), fresh=not reused)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


def record_root() -> Path:
    return studio_home() / "renders"


def _keep_record(spec: JobSpec, result: RenderResult, metric_files: list[Path], workers: int, fresh: bool) -> None:
    """Step 6: the job's record folder, and the ETA history (only for renders done in one go: a resumed
    render's wall time says nothing about its speed). A failure here is logged, never fatal: the output
    is already published."""
    from .cost import record_render

    folder = Path(result.record)
    try:
        records = [FrameMetrics(**json.loads(line)) for f in metric_files for line in f.read_text().splitlines()]
        summary = {**summarize(records, result.cuts), "measured": bool(records),
                   "sampling": {"every": RENDER_METRICS.every, "long_side": RENDER_METRICS.long_side}}
        if not records:
            summary["reason"] = "a per-pixel fast path rendered this job; measure it with `cli metrics IN OUT`"
        folder.mkdir(parents=True, exist_ok=True)
        write_jsonl(records, folder / "metrics.jsonl")
        atomic.write_json(folder / "summary.json", summary)
        perf = result.bottleneck()
        if perf is not None:
            atomic.write_json(folder / "perf.json", {**perf.to_json(), "fps": round(result.fps, 3),
                                                     "wall_seconds": round(result.wall_seconds, 3),
                                                     "workers": workers, "stages": result.stages})
        atomic.write_json(folder / "job.json", {"job_hash": result.job_hash, "input": spec.input, "style": spec.style,
                                                "params": repr(spec.params), "output": result.output,
                                                "frames": result.frames, "seconds": round(result.wall_seconds, 3),
                                                "codec": result.codec, "cuts": list(result.cuts)})
        if fresh:
            record_render(spec.style, result.size[0], result.size[1], result.frames, result.wall_seconds, workers)
    except (OSError, ValueError, TypeError) as exc:
        log.warning("%s: could not keep the render's record in %s: %s", spec.output, folder, exc)


def _result(fut: Future, spec: JobSpec, what: str) -> Any:
    try:
        return fut.result()
    except BrokenProcessPool:
        raise RenderError(f"{spec.input}: the worker process died during {what} (the file may be corrupt)") from None


def _reusable(chunks: list[Chunk], verified: set[int], work_dir: Path) -> tuple[int, ...]:
    """The verified chunks a resumed render keeps: all of them, except one whose successor carries its state,
    must be rendered, and whose state file is gone (it is rendered again to leave that state)."""
    keep = set(verified)
    carried = {c.id for c in chunks if c.carry}
    for c in reversed(chunks):  # from the end: dropping a chunk may make the one before it needed
        nxt = c.id + 1
        if c.id in keep and nxt in carried and nxt not in keep and not _Carry.readable(
                work_dir / state_file(c.id), c.stop - 1):
            log.warning("%s: chunk %d's saved state is missing or damaged; rendering it again for chunk %d",
                        work_dir, c.id, nxt)
            keep.discard(c.id)
    return tuple(sorted(keep))


def _run_chunks(ex: Executor, pool: LocalPool | None, spec: JobSpec, analysis: Analysis, todo: Iterable[Chunk],
                work_dir: Path, ckpt: Checkpoint, already: int, on_progress: ProgressFn | None,
                pipelined: bool, threads: int, at_once: int, decode: str = "cpu") -> None:
    """Render ``todo`` with at most ``at_once`` chunks running, checkpointing each. A chunk starts in plan
    order once it is ready: a carrying chunk when the chunk before it is done (and has left its state)."""
    futures: dict[Future, Chunk] = {}
    queued = list(todo)
    successors = {c.id - 1 for c in queued if c.carry}  # chunks whose end state a chunk still to render needs

    def submit_ready() -> None:
        running = len(futures) - len(ckpt.done.keys() & {c.id for c in futures.values()})
        for chunk in [c for c in queued if not c.carry or c.id - 1 in ckpt.done]:
            if running >= at_once:
                return
            queued.remove(chunk)
            task = ChunkTask(spec, analysis, chunk, str(work_dir.absolute()), pipelined, threads=threads,
                             keep_state=chunk.id in successors, decode=decode)
            futures[ex.submit(render_chunk, task)] = chunk
            running += 1

    submit_ready()
    live: dict[int, int] = {}
    total = analysis.info.frame_count
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
        for fut in finished:
            chunk = futures[fut]
            try:
                record = fut.result()
            except BrokenProcessPool:
                raise RenderError(f"{spec.input}: chunk {chunk.id} (frames {chunk.start}-{chunk.stop - 1}) "
                                  "failed: its worker process died (the file may be corrupt)") from None
            except StudioError:
                raise
            except Exception as exc:
                raise RenderError(f"{spec.input}: chunk {chunk.id} failed: {type(exc).__name__}: {exc}") from exc
            ckpt.mark_done(chunk.id, record)
            if chunk.carry:  # its predecessor's state has served (4K: ~130 MB a state); a resume no longer needs it
                with contextlib.suppress(OSError):
                    (work_dir / state_file(chunk.id - 1)).unlink()
            live[chunk.id] = record["frames"]
            n = len(futures)
            submit_ready()
            pending |= set(list(futures)[n:])
        if pool is not None:
            for cid, n in pool.drain():
                if cid not in ckpt.done:
                    live[cid] = n
        if on_progress:
            on_progress(already + sum(live.values()), total)
    if queued:  # a plan the scheduler cannot finish (a carrying chunk without its predecessor): never publish it
        raise RenderError(f"{spec.input}: chunks {[c.id for c in queued]} could not start: the chunks before them "
                          "were neither rendered nor kept")


# ---------------------------------------------------------------------------------------------- preview


_ANALYSES: dict[tuple[Any, ...], Analysis] = {}
_ANALYSES_KEPT = 8


def _cached_analysis(spec: JobSpec) -> Analysis:
    """``analyze_job`` once per (input file state, style, parameters): scrubbing a preview through a clip
    must not re-fit the cartoon palette (about a second at 1080p) for every frame."""
    st = Path(spec.input).stat()
    key = (str(Path(spec.input).resolve()), st.st_size, st.st_mtime_ns, spec.style, repr(spec.params))
    if key not in _ANALYSES:
        while len(_ANALYSES) >= _ANALYSES_KEPT:
            _ANALYSES.pop(next(iter(_ANALYSES)))
        _ANALYSES[key] = analyze_job(spec)
    return _ANALYSES[key]


def preview_frame(spec: JobSpec, seconds: float) -> np.ndarray:
    """One stylized frame at ``seconds``, fast: seek to the keyframe before it and decode forward.

    Runs the style's job-wide analysis on the same samples a render would use (cached per clip, style and
    parameters), so the preview matches the render.
    """
    check_input_file(Path(spec.input))
    analysis = _cached_analysis(spec)
    if not 0 <= seconds <= analysis.info.duration:
        raise ConfigError(f"{spec.input}: --at {seconds} is outside the clip (0 .. {analysis.info.duration:.3f} s)")
    with Reader(analysis.info) as r:
        frame = r.frame_at(seconds)
    cls = get_style(spec.style)
    return cls(spec.params, analysis.shared)(frame.rgb, frame.index)
