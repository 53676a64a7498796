"""Same bytes wherever a job renders: 1, 2 or 4 local workers, pipelined or not, or a 2-worker Dask cluster.

The chunk plan (where chunks start, their pre-roll, which state they carry) is a function of the input and
the settings only (:func:`core.render.plan.plan_chunks`); workers decide only when a chunk runs. Outputs are
mp4 (Matroska's muxer writes a random segment UID, so two .mkv files of the same frames differ).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from core.render import plan
from core.render.executors import make_executor
from core.render.pipeline import render
from core.render.plan import plan_chunks
from core.render.spec import JobSpec, build_job
from core.video.probe import probe
from core.video.synthetic import ClipSpec, make_clip

#: (workers, pipelined) a job renders with locally; None pipelines where cores are idle (the default)
LOCAL_RUNS = ((1, False), (1, True), (2, None), (2, False), (4, True))


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s at 25 fps, a keyframe a second, a scene cut at frame 60, AAC audio."""
    spec = ClipSpec(frames=150, fps=Fraction(25), width=160, height=96, gop=25, cut_at=60, audio=True, seed=11)
    return make_clip(tmp_path_factory.mktemp("determinism") / "clip.mp4", spec)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    distributed = pytest.importorskip("distributed", reason="distributed (Dask) is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture
def short_lanes(monkeypatch: pytest.MonkeyPatch) -> float:
    """A lane per 3 s, so a 6-s clip is planned like a long one: two lanes of carried chunks."""
    monkeypatch.setattr(plan, "LANE_SECONDS", 3.0)
    return 3.0


def _sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _renders(spec: JobSpec, tmp_path: Path, cluster: Any) -> dict[str, str]:
    """The output's sha256 for every way of rendering ``spec``, each from a cold start."""
    shas = {}
    for workers, pipelined in LOCAL_RUNS:
        name = f"w{workers}-{'auto' if pipelined is None else 'on' if pipelined else 'off'}"
        job = dataclasses.replace(spec, output=str(tmp_path / f"{name}.mp4"))
        res = render(job, workers=workers, pipelined=pipelined)
        assert res.reused_chunks == ()
        shas[name] = _sha(job.output)
    job = dataclasses.replace(spec, output=str(tmp_path / "dask.mp4"))
    with make_executor(cluster.scheduler_address.replace("tcp://", "dask://")) as (executor, workers):
        assert workers == 2
        assert render(job, executor=executor, workers=workers).reused_chunks == ()
    shas["dask-2"] = _sha(job.output)
    return shas


def test_stateful_plan_same_bytes_everywhere(clip: Path, tmp_path: Path, cluster: Any, short_lanes: float) -> None:
    """Cartoon with the flow stabiliser: two lanes, each a cold chunk with pre-roll and a carried one; the
    lanes run at once on 2 and 4 workers, one after the other on 1, and the bytes are the same."""
    spec = build_job(clip, tmp_path / "ref.mp4", "cartoon", "balanced", chunk_seconds=1.5)
    plan = plan_chunks(probe(clip), 1.5, spec.preset.temporal.preroll_frames())
    assert [(c.preroll > 0, c.carry) for c in plan] == [(False, False), (False, True), (False, True), (True, False),
                                                        (False, True)]
    shas = _renders(spec, tmp_path, cluster)
    assert len(set(shas.values())) == 1, shas


def test_stateless_plan_same_bytes_everywhere(clip: Path, tmp_path: Path, cluster: Any) -> None:
    """No temporal state: independent chunks, whose bounds (each starts the encoder afresh) are the same
    for every worker count, so the bytes are too."""
    spec = build_job(clip, tmp_path / "ref.mp4", "pencil", "balanced", {"temporal.mode": "off"}, chunk_seconds=1.5)
    assert len(plan_chunks(probe(clip), 1.5, 0)) == 4
    shas = _renders(spec, tmp_path, cluster)
    assert len(set(shas.values())) == 1, shas


def test_lanes_follow_the_clip_not_the_workers(clip: Path) -> None:
    """A lane per :data:`core.render.plan.LANE_SECONDS` of video (each lane after the first pays pre-roll, on one
    worker too): one lane under two lanes' length, then one more per lane's length, at 25 fps and 60 fps."""
    base = probe(clip)
    for fps in (25, 60):
        for seconds, lanes in ((30, 1), (2 * plan.LANE_SECONDS - 1, 1), (2 * plan.LANE_SECONDS, 2),
                               (5.5 * plan.LANE_SECONDS, 5)):
            n = int(seconds * fps)
            info = dataclasses.replace(base, pts=tuple(range(n)), durations=(1,) * n, frame_ids=(),
                                       keyframes=tuple(range(0, n, 250)), time_base=Fraction(1, fps),
                                       duration=n / fps, frame_count=n)
            chunks = plan_chunks(info, 10, 43)
            assert sum(not c.carry for c in chunks) == lanes, (fps, seconds)
            assert [i for c in chunks for i in range(c.start, c.stop)] == list(range(n))
