"""The end of a render: stitch and publish the output (step 5), keep its record (step 6).

The output appears under its name only once it is whole (a temp name, renamed: a file, or an image
sequence's whole folder); the record
(``$VP_HOME/renders/<job hash>/``: job, per-frame metrics, summary, stage times) and the ETA history follow,
and a failure to keep them never fails a render that has published.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import atomic
from core.disk import disk_full_guard
from core.errors import OutputError
from core.paths import studio_home
from core.quality.metrics import FrameMetrics, summarize, write_jsonl
from core.video.probe import VideoInfo
from core.video.stitch import foreign_files, stitch, write_sequence
from core.video.writer import SEQUENCES

from . import stages
from .chunk import RENDER_METRICS
from .spec import JobSpec

log = logging.getLogger(__name__)


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


def publish(spec: JobSpec, info: VideoInfo, files: list[tuple[Path, int]]) -> Path:
    """Step 5: the chunk files (with their pts offsets) stitched with the source's other streams into
    ``spec.output`` (an image sequence's folder for PNG and TIFF), written under a temp name and renamed only
    once whole; a full disk leaves no partial file."""
    out = Path(spec.output)
    ext = SEQUENCES.get(spec.preset.encoder.codec)
    with disk_full_guard(out.parent, sum(f.stat().st_size for f, _ in files) + Path(spec.input).stat().st_size):
        if ext is None:
            with atomic.atomic_path(out) as tmp:
                stitch(files, Path(spec.input), info, tmp, audio=spec.audio, subtitles=spec.subtitles)
        else:
            with atomic_folder(out) as tmp:
                write_sequence(files, Path(spec.input), info, tmp, ext, audio=spec.audio, subtitles=spec.subtitles)
    return out


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """:func:`core.atomic.atomic_path` for a folder: yield an empty hidden sibling to fill (``.NAME.PID.partial``);
    on success it is renamed to ``final``, on any error removed. An earlier image sequence at ``final`` is
    replaced (moved aside, then deleted); a folder holding anything else is an OutputError, never deleted.
    What a killed writer left (its pid gone) is removed first."""
    _remove_stale_folders(final)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.partial")
    aside = final.with_name(f".{final.name}.{os.getpid()}.partial.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        atomic.fsync_dir(tmp)
        if final.is_dir():
            foreign = foreign_files(final)
            if foreign:
                raise OutputError(f"{final}: holds files an image sequence does not ({foreign[0]}, ...); choose a new "
                                  "or empty folder")
            os.replace(final, aside)
        try:
            os.replace(tmp, final)
        except OSError:
            if aside.is_dir():
                os.replace(aside, final)
            raise
        atomic.fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_folders(final: Path) -> None:
    """Remove the temp folders of ``final`` whose writer is no longer running (killed mid-write)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(final.parent):
            found = atomic.temp_writer(Path(entry.name)) if entry.name.startswith(".") else None
            if found and found[0] == final.name and entry.is_dir(follow_symlinks=False) \
                    and not atomic.pid_alive(found[1]):
                shutil.rmtree(entry.path, ignore_errors=True)


def record_root() -> Path:
    return studio_home() / "renders"


def keep_record(spec: JobSpec, result: RenderResult, metric_files: list[Path], workers: int, fresh: bool) -> None:
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
