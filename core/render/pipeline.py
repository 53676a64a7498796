"""One render: check inputs, analyse once, plan chunks, render them in worker processes, stitch, publish.

Numbered steps (see :func:`render`), each in the module named:
  1. check the input and output paths (cheap, in this process; :func:`check_paths`);
  2. analyse the input in a worker (probe + style analysis; a corrupt file can crash only the worker;
     :func:`core.render.plan.analyze_job`);
  3. plan chunks at keyframes near ``chunk_seconds``; every frame in exactly one chunk
     (:func:`core.render.plan.plan_chunks`);
  4. render the chunks not already in the checkpoint, each to its own file, recorded as it finishes
     (:func:`core.render.chunk.render_chunk`, scheduled here);
  5. stitch the chunks by stream copy, add the source audio once, and only then publish atomically
     (:func:`core.render.publish.publish`);
  6. keep the job's record: ``$VP_HOME/renders/<job hash>/`` with ``job.json``, ``metrics.jsonl`` (per
     measured frame, see :mod:`core.quality.metrics`) and ``summary.json`` (mean, p95, per shot), and append the
     render to the history the ETA model learns from (:func:`core.render.publish.keep_record`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from core import atomic
from core.disk import disk_full_guard
from core.errors import ConfigError, OutputError, RenderError, StudioError, UnsupportedVideoError
from core.video.probe import check_input_file
from core.video.reader import DECODERS
from stylizers import get_style

from . import stages
from .checkpoint import Checkpoint
from .chunk import Carry, ChunkTask, chunk_file, render_chunk, state_file
from .plan import Analysis, Chunk, analyze_job, plan_chunks
from .pool import LocalPool, default_workers
from .publish import RenderResult, keep_record, publish, record_root
from .spec import JobSpec, check_output
from .temporal import Stabiliser
from .workdir import remove_superseded, work_lock, work_root

log = logging.getLogger(__name__)


def check_paths(spec: JobSpec) -> None:
    """Input exists and is a non-empty file; output is a writable path for the encoder: a file of a container
    that holds its codec, or a folder for an image sequence (:func:`core.render.spec.check_output`)."""
    src, out = Path(spec.input), Path(spec.output)
    check_input_file(src)
    if out.exists() and out.resolve() == src.resolve():
        raise OutputError(f"{out}: output path is the input file; choose another name")
    check_output(out, spec.preset.encoder)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        probe_file = atomic.temp_path(out, ".write-test")
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write to folder {out.parent} ({exc.strerror or exc})") from None


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


ProgressFn = Callable[[int, int], None]


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
                         partials=(work_root() / spec.job_hash(),)), work_lock(spec.job_hash()):
        return _render(spec, workers, executor, on_progress, on_start, keep_work, pipelined, decode)


def _render(spec: JobSpec, workers: int | None, executor: Executor | None, on_progress: ProgressFn | None,
            on_start: Callable[[int, int], None] | None, keep_work: bool, pipelined: bool | None,
            decode: str = "cpu") -> RenderResult:
    t0 = time.perf_counter()
    wanted = chunks_at_once(spec, workers, executor)
    # a process per chunk at once, none idle, each setting up what the style and the kernels the chunks will call
    # need (the style's first: the analysis needs it soonest) while the analysis runs
    style = get_style(spec.style)
    warm = style.warm_modules + Stabiliser(spec.preset.temporal, enabled=style.stabilise).compiled
    pool = None if executor is not None else LocalPool(wanted, warm)
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
        remove_superseded(work_root(), str(Path(spec.output).resolve()), work_dir)
        ckpt = Checkpoint.open(work_dir, job_hash, str(Path(spec.output).resolve()))
        if ckpt.plan:  # step 3: a resumed job keeps its plan, whatever the worker count is now
            chunks = [Chunk(*c[:4], carry=bool(c[4:5] and c[4])) for c in ckpt.plan]
        if not ckpt.plan:
            stateful = Stabiliser(spec.preset.temporal, enabled=style.stabilise).active
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
        out = publish(spec, info, files)  # step 5
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
    keep_record(spec, result, [work_dir / ckpt.done[c.id]["metrics"] for c in chunks if "metrics" in ckpt.done[c.id]],
                 workers or default_workers(), fresh=not reused)
    if not keep_work:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


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
        if c.id in keep and nxt in carried and nxt not in keep and not Carry.readable(
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


