"""The render engine end to end: frame-exact timing, parity, chunking, resume, odd inputs."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from core.render.pipeline import render
from core.render.plan import plan_chunks
from core.render.spec import build_job
from core.render.workdir import work_root
from core.video.probe import probe
from core.video.synthetic import ClipSpec, scene_frame
from stylizers import READY_STYLES, get_style
from tests.conftest import decode_all, kill_after_chunks, psnr

ROOT = Path(__file__).resolve().parents[2]


def assert_same_timing(src: Path, out: Path) -> None:
    a, b = probe(src), probe(out)
    assert b.frame_count == a.frame_count
    assert [p * a.time_base for p in a.pts] == [p * b.time_base for p in b.pts]
    assert abs(b.duration - a.duration) <= float(a.time_base) + 1e-9
    assert abs(float(b.fps) - float(a.fps)) / float(a.fps) < 0.01
    assert b.vfr == a.vfr
    frame = float(1 / a.fps)
    assert len(b.audio) == len(a.audio)
    for x, y in zip(a.audio, b.audio, strict=True):
        assert y.codec == x.codec and y.sample_rate == x.sample_rate and y.channels == x.channels
        assert x.duration is not None and y.duration is not None
        assert abs(y.duration - x.duration) <= frame


@pytest.mark.parametrize("style", sorted(READY_STYLES))  # neural: tests/ml/test_session.py
@pytest.mark.parametrize("clip", ["cfr", "cfr_audio", "vfr_audio"])
def test_frame_exact(clips: dict[str, Path], tmp_path: Path, style: str, clip: str) -> None:
    out = tmp_path / f"{style}.mp4"
    res = render(build_job(clips[clip], out, style, "speed", chunk_seconds=0.6), workers=2)
    assert res.chunks >= 2
    assert_same_timing(clips[clip], out)


@pytest.mark.parametrize("style", ["none", "pencil"])
def test_chunked_h264_into_matroska(clips: dict[str, Path], tmp_path: Path, style: str) -> None:
    """Matroska keeps no decode stamps, so a later chunk's reordered first packets come back without one;
    the stitcher must still join them (it once refused: "Invalid argument")."""
    out = tmp_path / f"{style}.mkv"
    res = render(build_job(clips["cfr"], out, style, "speed", chunk_seconds=0.6), workers=2)
    assert res.chunks >= 2
    assert_same_timing(clips["cfr"], out)


@pytest.mark.parametrize("style", ["none", "cartoon"])
def test_ntsc_mpegts_into_matroska(tmp_path: Path, style: str) -> None:
    """An MPEG-TS at 30000/1001 fps starts at a stamp that is no whole millisecond (6006/90000 s), so a
    Matroska chunk (1 ms ticks) cannot be shifted back by its offset: the render once failed ("chunk time base
    1/1000 cannot hold offset 6006"). Each output frame must now sit where FFmpeg puts it when it rescales the
    source's stamp to milliseconds (nearest, ties away from zero: ``av_rescale_q``)."""
    from core.video.synthetic import make_clip

    src = make_clip(tmp_path / "ntsc.ts", ClipSpec(frames=60, fps=Fraction(30000, 1001), gop=12))
    a = probe(src)
    assert any((p * a.time_base * 1000).denominator != 1 for p in a.pts)  # the case: stamps between milliseconds
    out = tmp_path / f"{style}.mkv"
    res = render(build_job(src, out, style, "speed", chunk_seconds=0.5), workers=2)
    assert res.chunks >= 2
    b = probe(out)
    assert b.frame_count == a.frame_count
    want = [math.floor(p * a.time_base / b.time_base + Fraction(1, 2)) for p in a.pts]
    assert list(b.pts) == want


def test_chunks_of_another_container_are_not_reused(clips: dict[str, Path], tmp_path: Path) -> None:
    """The same job sent to .mkv and then .mp4 shares a work folder; the .mkv chunks must not be stitched
    into the .mp4."""
    spec = build_job(clips["cfr"], tmp_path / "a.mkv", "pencil", "speed", chunk_seconds=0.6)
    render(spec, workers=2, keep_work=True)
    res = render(build_job(clips["cfr"], tmp_path / "a.mp4", "pencil", "speed", chunk_seconds=0.6), workers=2)
    assert res.reused_chunks == ()
    assert_same_timing(clips["cfr"], tmp_path / "a.mp4")


@pytest.mark.parametrize("passthrough", ["true", "false"])
def test_identity_psnr(clips: dict[str, Path], tmp_path: Path, passthrough: str) -> None:
    """Both identity paths: decoded frames copied to the encoder, and the full RGB round trip."""
    out = tmp_path / "id.mp4"
    render(build_job(clips["cfr_audio"], out, "none", "quality", {"encoder.crf": "8", "passthrough": passthrough}),
           workers=2)
    src, dst = decode_all(clips["cfr_audio"]), decode_all(out)
    assert len(src) == len(dst)
    worst = min(psnr(a, b) for a, b in zip(src, dst, strict=True))
    assert worst >= 40, worst


def test_chunked_equals_single(clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lanes whose first chunk warms up on pre-roll (a lane per 2 s here, as a long clip is cut) give a
    single pass's frames to rounding."""
    from core.render import plan

    lossless = {"encoder.codec": "ffv1"}  # FFV1 in RGB (bgr0): what the stages produced, bit for bit
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    r1 = render(build_job(clips["long"], one, "cartoon", "balanced", lossless, chunk_seconds=100), workers=1)
    monkeypatch.setattr(plan, "LANE_SECONDS", 2.0)
    r4 = render(build_job(clips["long"], many, "cartoon", "balanced", lossless, chunk_seconds=1), workers=2)
    assert r1.chunks == 1 and r4.chunks >= 3
    a, b = np.stack(decode_all(one)).astype(np.int16), np.stack(decode_all(many)).astype(np.int16)
    diff = np.abs(a - b)
    assert diff.max() <= 2 and diff.mean() <= 0.1, (diff.max(), diff.mean())


@pytest.mark.parametrize(("clip", "style", "seconds"), [("long", "cartoon", 1.0), ("cut", "pencil", 0.625)])
def test_carried_chunks_equal_a_single_pass(clips: dict[str, Path], tmp_path: Path, clip: str, style: str,
                                            seconds: float) -> None:
    """One chunk at a time: every chunk after the first starts from the state the one before saved, so the
    frames and the measured metrics are a single pass's exactly (the cut clip has a chunk edge just before
    its cut at 31, found from the carried features of frame 30)."""
    lossless = {"encoder.codec": "ffv1"}
    one, many = tmp_path / "one.mkv", tmp_path / "many.mkv"
    r1 = render(build_job(clips[clip], one, style, "balanced", lossless, chunk_seconds=100), workers=1)
    rn = render(build_job(clips[clip], many, style, "balanced", lossless, chunk_seconds=seconds), workers=1)
    assert r1.chunks == 1 and rn.chunks >= 3 and rn.cuts == r1.cuts
    assert np.array_equal(np.stack(decode_all(one)), np.stack(decode_all(many)))
    a, b = ([json.loads(line) for line in Path(r.metrics).read_text().splitlines()] for r in (r1, rn))
    assert [r.keys() for r in a] == [r.keys() for r in b] and len(a) >= 10
    for x, y in zip(a, b, strict=True):  # the files keep 6 decimals; BLAS may move the last one
        assert all(x[k] == y[k] if x[k] is None or y[k] is None else abs(x[k] - y[k]) <= 2e-6 for k in x), (x, y)


def test_missing_state_renders_the_chunk_before_again(clips: dict[str, Path], tmp_path: Path) -> None:
    """A state is deleted once the chunk that carries it is done; a resumed render whose next chunk needs a
    state that is gone renders the chunks that leave it again, from the lane's start, and the frames are
    the same."""
    spec = build_job(clips["long"], tmp_path / "o.mkv", "pencil", "balanced", {"encoder.codec": "ffv1"},
                     chunk_seconds=1)
    ref = render(spec, workers=1, keep_work=True)
    work = work_root() / ref.job_hash
    assert ref.chunks == 4 and not list(work.glob("state_*.npz"))
    frames = decode_all(tmp_path / "o.mkv")
    (work / "chunk_0002.mkv").unlink()  # chunk 2 needs chunk 1's state, chunk 1 chunk 0's: both gone
    again = render(spec, workers=1, keep_work=True)
    assert again.reused_chunks == (3,)
    assert np.array_equal(np.stack(decode_all(tmp_path / "o.mkv")), np.stack(frames))


def test_resume_keeps_a_chunk_only_with_a_whole_state(clips: dict[str, Path], tmp_path: Path) -> None:
    """What a crash leaves: chunks done, the last one's state on disk. A chunk is kept for the next one only
    when its state is whole and of its last frame; a truncated or foreign state re-renders it."""
    from core.presets import TemporalConfig
    from core.quality.metrics import MetricsMeter
    from core.render.chunk import Carry, state_file
    from core.render.pipeline import _reusable
    from core.render.temporal import Stabiliser

    chunks = plan_chunks(probe(clips["long"]), 1, preroll=43)
    assert [c.carry for c in chunks] == [False, True, True, True]
    stab = Stabiliser(TemporalConfig(mode="ema"))
    stab.load_state_dict({"base": np.full((8, 8, 3), 0.5, np.float32)})
    carry = Carry(stab, MetricsMeter())
    carry.save(tmp_path / state_file(1), chunks[1].stop - 1)
    assert _reusable(chunks, {0, 1}, tmp_path) == (0, 1)  # crashed in chunk 2: chunk 1's state serves
    carry.save(tmp_path / state_file(2), chunks[2].stop - 1)
    whole = (tmp_path / state_file(2)).read_bytes()
    (tmp_path / state_file(2)).write_bytes(whole[: len(whole) // 2])
    assert _reusable(chunks, {0, 1, 2}, tmp_path) == (0, 1)  # truncated: chunk 2 again, from chunk 1's state
    carry.save(tmp_path / state_file(1), chunks[1].stop - 2)  # a state of another frame
    assert _reusable(chunks, {0, 1}, tmp_path) == ()  # chunk 1 again, and so chunk 0, whose state is gone


def test_read_samples_decodes_from_each_keyframe(clips: dict[str, Path]) -> None:
    """Samples (on keyframes, between them, several after one keyframe) equal a full pass's frames."""
    from core.render.plan import read_samples

    info = probe(clips["long"])  # keyframes every 25 frames
    want = [0, 10, 24, 25, 60, 61, 99]
    full = decode_all(clips["long"])
    got = read_samples(info, want)
    assert len(got) == len(want) and all(np.array_equal(g, full[i]) for g, i in zip(got, want, strict=True))
    assert read_samples(info, []) == []


def test_chunks_cover_every_frame_once(clips: dict[str, Path]) -> None:
    for name in ("long", "vfr_audio", "cut"):
        info = probe(clips[name])
        for secs in (0.3, 0.7, 1.0, 2.5, 100):
            chunks = plan_chunks(info, secs, preroll=5)
            covered = [i for c in chunks for i in range(c.start, c.stop)]
            assert covered == list(range(info.frame_count))
            # a clip shorter than a lane is one lane: every chunk after the first carries its predecessor's state
            assert not chunks[0].carry and all(c.carry and c.preroll == 0 for c in chunks[1:])
            for lane_s in (0.9, 1.5):  # the plan of a longer clip: a lane per lane_s seconds
                plan = plan_chunks(info, secs, preroll=5, lane_seconds=lane_s)
                assert [i for c in plan for i in range(c.start, c.stop)] == list(range(info.frame_count))
                starts = [c for c in plan if not c.carry]
                assert len(starts) == int(info.duration // lane_s) and starts[0].id == 0
                assert all(c.preroll == min(5, c.start) for c in starts)
                assert all(c.preroll == 0 for c in plan if c.carry)
            stateless = plan_chunks(info, secs, preroll=0)  # an even count, of a second at least (about)
            assert [i for c in stateless for i in range(c.start, c.stop)] == list(range(info.frame_count))
            assert len(stateless) == min(max(1, round(info.duration)), 2 * math.ceil(info.duration / secs / 2))


def test_plan_balances_the_pre_roll_work(tmp_path: Path) -> None:
    """Chunks after the first also render ``preroll`` frames they do not keep: the first is made longer so
    every worker gets the same work, and a style without state plans equal chunks."""
    from core.video.synthetic import make_clip

    info = probe(make_clip(tmp_path / "k.mp4", ClipSpec(frames=120, fps=Fraction(24), gop=1, width=64, height=48)))
    a, b = plan_chunks(info, 100, preroll=20, lane_seconds=2.5)  # a 5-s clip, two lanes
    assert (a.frames, b.frames, b.preroll) == (70, 50, 20)
    assert [c.frames for c in plan_chunks(info, 100, preroll=0)] == [60, 60]
    assert sum(c.frames for c in plan_chunks(info, 1, preroll=200, lane_seconds=2.5)) == 120  # pre-roll > chunk


def test_plan_ends_the_workers_together_on_sparse_keyframes(tmp_path: Path) -> None:
    """Pieces that run at once are sized by work (frames, pre-roll, decode from the keyframe before), not
    snapped to keyframes (lanes snapped to a 250-frame GOP had differed by 100 frames)."""
    import heapq

    from core.render.plan import DECODE_SHARE
    from core.video.synthetic import make_clip

    info = probe(make_clip(tmp_path / "g.mp4", ClipSpec(frames=300, fps=Fraction(30), gop=100, width=64, height=48)))
    keys = info.keyframe_indices
    assert 1 < len(keys) < 6  # sparse: a GOP of about 100 frames

    def work(c) -> float:
        begin = c.start - c.preroll
        return c.frames + c.preroll + DECODE_SHARE * (begin - max(k for k in keys if k <= begin))

    a, b = plan_chunks(info, 100, preroll=20, lane_seconds=5)  # two lanes of one chunk
    assert b.preroll == 20 and abs(work(a) - work(b)) <= 1.5
    for chunk_s in (2.5, 1.2, 2):  # a stateless plan: balanced for two workers at once
        plan = plan_chunks(info, chunk_s, preroll=0)
        workers = 2
        assert len(plan) % workers == 0 and len(plan) > workers
        free = [0.0] * workers  # each worker takes the next chunk when it is free
        for c in plan:
            heapq.heappush(free, heapq.heappop(free) + work(c))
        assert max(free) - min(free) <= 1.5, (chunk_s, [(c.start, c.stop) for c in plan])


def test_pipeline_auto_only_where_cores_are_idle(clips: dict[str, Path], tmp_path: Path) -> None:
    """A style with temporal state renders one pipelined chunk per 2 cores (no pre-roll paid for splitting);
    a stateless one a chunk per core, one loop each; ``workers`` overrides both."""
    from core.render.pipeline import STAGE_CORES, chunks_at_once, pipeline_auto

    cores = os.cpu_count() or 1
    assert not pipeline_auto(cores)
    assert pipeline_auto(cores - 1) == (cores > 1)
    stateful = build_job(clips["cfr"], tmp_path / "a.mp4", "pencil", "balanced")
    stateless = build_job(clips["cfr"], tmp_path / "b.mp4", "pencil", "balanced", {"temporal.mode": "off"})
    assert chunks_at_once(stateful, None, None) == max(1, cores // STAGE_CORES)
    assert chunks_at_once(stateless, None, None) == cores
    assert chunks_at_once(stateful, 3, None) == 3


def test_chunks_prefer_keyframes(clips: dict[str, Path]) -> None:
    info = probe(clips["long"])  # keyframe every 25 frames = 1 s; one lane, whose chunks run one by one
    chunks = plan_chunks(info, 1.1, preroll=5)
    keys = {info.pts.index(k) for k in info.keyframes}
    assert all(c.start in keys for c in chunks)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_crash_and_resume(clips: dict[str, Path], tmp_path: Path, studio_home: Path) -> None:
    src = tmp_path / "src.mp4"
    from core.video.synthetic import make_clip

    make_clip(src, ClipSpec(width=480, height=272, frames=100, gop=25, audio=True, seed=5))
    ref = tmp_path / "ref.mp4"
    args = ["--style", "cartoon", "--chunk-seconds", "1", "--workers", "1", "-q"]
    env = {**os.environ, "VP_HOME": str(studio_home)}
    subprocess.run([sys.executable, "-m", "scripts.cli", "render", str(src), "-o", str(ref), *args],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    out = tmp_path / "out.mp4"
    done = kill_after_chunks([sys.executable, "-m", "scripts.cli", "render", str(src), "-o", str(out), *args],
                             env, ROOT)
    assert 2 <= len(done) < 4
    assert not out.exists(), "a killed render must not leave a file at the output path"
    rerun = subprocess.run([sys.executable, "-m", "scripts.cli", "render", str(src), "-o", str(out), *args],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)}/4 chunks reused" in rerun.stdout
    assert "resuming" in rerun.stderr
    assert _sha(out) == _sha(ref)


def test_render_is_deterministic(clips: dict[str, Path], tmp_path: Path) -> None:
    """Same job, fresh work folders: the same bytes (resume and distributed renders rely on it)."""
    hashes = set()
    for i in range(3):
        out = tmp_path / f"d{i}.mp4"
        render(build_job(clips["cfr_audio"], out, "cartoon", "balanced", chunk_seconds=0.8), workers=2)
        hashes.add(_sha(out))
        shutil.rmtree(work_root(), ignore_errors=True)
    assert len(hashes) == 1


def test_checkpoint_reuse_and_invalidation(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    first = render(build_job(clips["long"], out, "pencil", "speed", chunk_seconds=1), workers=2, keep_work=True)
    again = render(build_job(clips["long"], out, "pencil", "speed", chunk_seconds=1), workers=2, keep_work=True)
    assert again.reused_chunks == tuple(range(first.chunks))
    changed = render(build_job(clips["long"], out, "pencil", "speed", {"blur_sigma": "9"}, chunk_seconds=1),
                     workers=2, keep_work=True)
    assert changed.reused_chunks == ()
    assert changed.job_hash != first.job_hash
    # the superseded job's work folder for the same output is gone
    assert [p.name for p in work_root().iterdir() if p.is_dir()] == [changed.job_hash]


def test_job_hash_covers_what_changes_pixels(clips: dict[str, Path], tmp_path: Path) -> None:
    base = build_job(clips["cfr"], tmp_path / "a.mp4", "cartoon", "balanced")
    assert base.job_hash() == build_job(clips["cfr"], tmp_path / "other.mp4", "cartoon", "balanced").job_hash()
    for variant in ({"n_colors": "5"}, {"encoder.crf": "30"}, {"temporal.strength": "0.1"}):
        assert build_job(clips["cfr"], tmp_path / "a.mp4", "cartoon", "balanced", variant).job_hash() != base.job_hash()
    touched = tmp_path / "copy.mp4"
    touched.write_bytes(clips["cfr"].read_bytes())
    h1 = build_job(touched, tmp_path / "a.mp4").job_hash()
    os.utime(touched, ns=(1, 1))
    assert build_job(touched, tmp_path / "a.mp4").job_hash() != h1


def test_scene_cut_resets_state(clips: dict[str, Path], tmp_path: Path) -> None:
    """At a cut the EMA starts over: the cut frame is the style's own output, with no trace of the last shot."""
    out = tmp_path / "cut.mkv"
    spec = build_job(clips["cut"], out, "pencil", "balanced", {"encoder.codec": "ffv1", "paper_texture": "0"})
    res = render(spec, workers=1)
    assert res.cuts == (31,)
    src, got = decode_all(clips["cut"]), decode_all(out)
    alone = get_style("pencil")(spec.params)(src[31], 31)
    assert np.abs(got[31].astype(int) - alone).max() <= 1
    assert np.abs(got[30].astype(int) - get_style("pencil")(spec.params)(src[30], 30)).max() > 2  # blended


def test_rotation_comes_out_upright(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rot.mp4"
    render(build_job(clips["rotated"], out, "none", "quality", {"encoder.crf": "4"}), workers=1)
    info = probe(out)
    assert (info.width, info.height, info.rotation) == (96, 160, 0)
    expected = np.rot90(scene_frame(ClipSpec(frames=12, width=160, height=96), 0), k=1)
    assert psnr(decode_all(out)[0], expected) > 30


def test_odd_size_is_padded(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    res = render(build_job(clips["odd"], out, "none", "quality", {"encoder.crf": "4"}), workers=1)
    assert res.padded and res.size == (162, 98)
    info = probe(out)
    assert (info.width, info.height) == (162, 98)
    src, dst = decode_all(clips["odd"])[3], decode_all(out)[3]
    assert psnr(src, dst[:97, :161]) > 30  # 4:4:4 in, 4:2:0 out: chroma detail is halved
    assert "padded" in res.summary()


@pytest.mark.parametrize("clip", ["p10", "p444"])
def test_high_bit_depth_and_444_decode(clips: dict[str, Path], tmp_path: Path, clip: str) -> None:
    info = probe(clips[clip])
    assert info.bit_depth == (10 if clip == "p10" else 8)
    frames = decode_all(clips[clip])
    ref = scene_frame(ClipSpec(frames=12), 5)
    assert frames[5].dtype == np.uint8 and psnr(frames[5], ref) > 33
    out = tmp_path / f"{clip}.mp4"
    render(build_job(clips[clip], out, "none", "quality", {"encoder.crf": "4"}), workers=1)
    assert probe(out).frame_count == 12 and psnr(decode_all(out)[5], ref) > 33


def test_progress_reports_reach_the_total(clips: dict[str, Path], tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    render(build_job(clips["long"], tmp_path / "p.mp4", "pencil", "speed", chunk_seconds=1), workers=2,
           on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (100, 100)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_same_job_to_two_outputs_at_once(clips: dict[str, Path], tmp_path: Path) -> None:
    """Two renders of one job (same work folder) to two outputs, concurrently: both finish, both whole."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [build_job(clips["cfr"], tmp_path / f"out{i}.mp4", "pencil", "speed", {}) for i in range(2)]
    assert jobs[0].job_hash() == jobs[1].job_hash()
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(lambda j: render(j, workers=1), jobs))
    a, b = (decode_all(Path(r.output)) for r in results)
    assert len(a) == len(b) == 48
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
