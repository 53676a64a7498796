"""One chunk, in a worker process: decode (with pre-roll) -> stylize -> temporal -> encode, to its own file.

Three paths give the same bytes their own way: the identity copy (decoded frames straight to the encoder),
a per-pixel table (a LUT-only look on 4-byte pixels) and the frame contract path (RGB frames through the
style, the stabiliser and the metrics). A chunk that carries state starts from what the chunk before it
saved (:class:`Carry`), so a lane's frames equal a single pass's.
"""

from __future__ import annotations

import contextlib
import logging
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic, color
from core.errors import RenderError
from core.presets import TemporalConfig
from core.quality.metrics import FrameMetrics, MetricsConfig, MetricsMeter, write_jsonl
from core.video.reader import Reader
from core.video.writer import Writer, check_delivery, chunk_suffix
from stylizers import Stylizer, get_style

from . import stages
from .live import LiveFrame, Watched
from .plan import Analysis, Chunk, analyze_job
from .pool import report_progress
from .spec import JobSpec
from .temporal import FrameFeatures, Stabiliser, cut_distance, frame_features

log = logging.getLogger(__name__)


#: Metrics measured while rendering: every 4th frame (with its predecessor, for the temporal metrics) on a
#: 320 px copy, 1.3 ms a 720p frame on average with the stabiliser's flow (2.5 ms with their own: cinematic;
#: ``python -m scripts.bench --only profile``), within the 15 % budget of a classical style's render.
#: The per-pixel fast paths (identity copy, LUT-only table) are not measured: measuring would cost more
#: than the render; ``python -m scripts.cli metrics IN OUT`` measures any output afterwards.
RENDER_METRICS = MetricsConfig(every=4)


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
    live: bool = True  # leave the latest encoded frame in work_dir every few seconds (core.render.live)


class _NothingWritten(Exception):
    """A chunk none of whose frames decoded: it leaves a record (0 frames) and no file."""


def chunk_file(chunk: Chunk, output: str) -> str:
    return f"chunk_{chunk.id:04d}{chunk_suffix(output)}"


def state_file(chunk_id: int) -> str:
    """Where chunk ``chunk_id`` leaves its temporal state for the chunk after it (see :class:`Carry`)."""
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
    check_delivery(spec.output, spec.preset.encoder, info)  # before any work: a size or rate the output refuses
    stylizer = get_style(spec.style)(spec.params, task.analysis.shared)
    final = Path(task.work_dir) / chunk_file(chunk, spec.output)
    offset = info.pts[chunk.start]  # chunk files start at pts 0; the stitcher adds this back
    times = stages.StageTimes(task.clock)
    carry: Carry | None = None
    with contextlib.suppress(_NothingWritten), atomic.atomic_path(final) as tmp:
        with Reader(info, task.decode) as reader, Writer(tmp, width=info.width, height=info.height, fps=info.fps,
                                            time_base=info.time_base, color=info.color,
                                            encoder=spec.preset.encoder) as writer:
            if task.live:
                writer = Watched(writer, LiveFrame(task.work_dir, offset, info.time_base))  # type: ignore[assignment]
            table = _pixel_table(stylizer, spec.preset.temporal)
            if stylizer.passthrough and reader.passthrough_ok(writer.pix_fmt):
                flow, cut_frames = _copy_frames(reader, writer, chunk, offset)
            elif table is not None and reader.rgbx_ok():
                flow, cut_frames = _table_frames(reader, writer, chunk, offset, table)
            else:
                carry = Carry(Stabiliser(spec.preset.temporal, enabled=type(stylizer).stabilise),
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
        if not written:  # every frame lost: the muxer never opened the file, and there is nothing to keep
            raise _NothingWritten
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


class Carry:
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
        self.feats = FrameFeatures(f["signature"], f.get("small"), f.get("reduced")) if "signature" in f else None


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
                  temporal: TemporalConfig, carry: Carry, measured: list[FrameMetrics],
                  times: stages.StageTimes) -> tuple[Flow, list[int]]:
    """The frame contract path: RGB frames through the style and the temporal stage.

    Returns the flow and the list the cut indices land in as it runs. What depends on the input frames
    alone (the style, the cut measure and the motion between frames t-1 and t) is the prepare stage, which
    may run several frames at once; the stabiliser's blend, which needs the previous output, is the
    process stage, in order, and the metrics follow it there: the encoder's thread, the longest serial chain
    (x264 at one thread), carries only the encoding. ``meter`` sees every output frame
    (pre-roll included, so the chunk's first frames have temporal metrics) and is reset at cuts like the
    stabiliser; the chunk's own measured frames go to ``measured``. ``carry`` holds the stabiliser and the
    meter, loaded with the previous chunk's state for a carrying chunk, and keeps the last frame's features
    for the next. Stage parts are timed in ``times``: stylize and motion (prepare), temporal and measure
    (process)."""
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

    def process(pair: tuple[tuple[Any, Any, Any], tuple[Any, bool, Any]]) -> tuple[Any, np.ndarray, Any]:
        (frame, _, feats), (styled, cut, motion) = pair
        with times.timed("temporal"):
            if cut:
                stab.reset()
                if frame.index >= chunk.start:
                    cut_frames.append(frame.index)
            out = stab.apply(styled, motion)
        with times.timed("measure"):
            if cut:
                meter.reset()
            # the stabiliser's flow and reduced input are the metrics' own (the same small copies, the same
            # DIS preset): measured once
            m = meter.update(frame.index, frame.rgb, out, None if motion is None else motion.pair,
                             small_in=None if feats is None else feats.reduced)
        return frame, out, m

    def sink(item: tuple[Any, np.ndarray, FrameMetrics | None]) -> None:
        frame, out, m = item
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
        task = ChunkTask(spec, analysis, Chunk(0, 0, n, 0), tmp, pipelined=False, clock=time.process_time,
                         live=False)
        return render_chunk(task)["stages"]
