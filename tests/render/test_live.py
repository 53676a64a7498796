"""core.render.live: a running render leaves its latest frame in its work folder, and the chunks finished from
the start play (and can be kept) as a file whose sound stops where its picture does."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.render import live
from core.render.pipeline import render
from core.render.spec import build_job
from core.render.workdir import work_root
from core.video.probe import count_frames, probe
from core.video.synthetic import ClipSpec, make_clip


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    """A 60-frame 25 fps clip with audio rendered in 0.8 s chunks with its work folder kept, a live frame
    written for every frame (``VP_LIVE_EVERY`` tiny)."""
    root = tmp_path_factory.mktemp("live")
    mp = pytest.MonkeyPatch()
    mp.setenv("VP_HOME", str(root / "home"))
    mp.setenv("VP_LIVE_EVERY", "0.05")
    try:
        clip = make_clip(root / "in.mp4", ClipSpec(width=960, height=540, frames=60, fps=Fraction(25), audio=True,
                                                   gop=10, seed=3))
        spec = build_job(clip, root / "out.mp4", "pencil", "speed", chunk_seconds=0.8)
        result = render(spec, workers=2, keep_work=True)
        yield clip, work_root() / result.job_hash, result
    finally:
        mp.undo()


def test_live_frame_is_a_small_jpeg_of_the_render(kept) -> None:
    clip, folder, _ = kept
    shown = live.latest(folder)
    assert shown is not None and shown.age_s < 600
    img = cv2.imdecode(np.frombuffer(shown.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3)  # 960x540 shown at 640 px wide
    assert 0.0 <= shown.seconds <= probe(clip).duration
    assert not list(folder.glob(".live*"))  # no temp file left behind


def test_finished_part_of_a_done_render_is_all_of_it(kept) -> None:
    _, folder, result = kept
    part = live.finished(folder)
    assert part is not None and part.end_frame == -1
    assert part.frames == part.total_frames == result.frames == 60
    assert len(part.files) == result.chunks >= 3


def _cut_checkpoint(folder: Path, dest: Path, keep: set[int]) -> Path:
    """A copy of the work folder whose checkpoint lists only the chunks ``keep``: a render still running."""
    dest.mkdir()
    data = json.loads((folder / "checkpoint.json").read_text())
    data["done"] = {k: v for k, v in data["done"].items() if int(k) in keep}
    for name in [v["file"] for v in data["done"].values()]:
        (dest / name).write_bytes((folder / name).read_bytes())
    (dest / "checkpoint.json").write_text(json.dumps(data))
    return dest


def test_finished_prefix_stops_at_the_first_gap(kept, tmp_path: Path) -> None:
    _, folder, _ = kept
    plan = json.loads((folder / "checkpoint.json").read_text())["plan"]
    assert live.finished(_cut_checkpoint(folder, tmp_path / "none", {1, 2})) is None  # chunk 0 still running
    part = live.finished(_cut_checkpoint(folder, tmp_path / "two", {0, 1, 3}))
    assert part is not None and [p.name for p, _ in part.files] == ["chunk_0000.mp4", "chunk_0001.mp4"]
    assert part.frames == plan[2][1] and part.end_frame == plan[2][1]


def _ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def test_partial_output_plays_with_its_sound_cut_at_its_end(kept, tmp_path: Path) -> None:
    clip, folder, _ = kept
    part = live.finished(_cut_checkpoint(folder, tmp_path / "w", {0, 1}))
    out = live.write_finished(part, clip, tmp_path / "in_pencil_partial.mp4")
    assert count_frames(out) == part.frames
    streams = _ffprobe(out)
    video_s = float(streams["video"]["duration"])
    assert abs(video_s - part.frames / 25) < 0.05
    assert abs(float(streams["audio"]["duration"]) - video_s) < 0.05  # not the source's whole 2.4 s of sound
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_live_frame_costs_little() -> None:
    """One live frame of a 1080p render: a downscale and a JPEG, a few ms every 2 s (bench `live` measures
    the share of render time; here only that it is written and is small)."""
    frame = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VP_LIVE_EVERY", "1000")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            lf = live.LiveFrame(tmp, 0, Fraction(1, 25))
            lf.offer(frame, 0)
            lf.offer(frame, 1)  # not due again for 1000 s
            assert lf.saved == 1 and (Path(tmp) / live.LIVE_NAME).stat().st_size < 400_000
