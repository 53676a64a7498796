"""Temporal stage: EMA stabilisation of the stylized layers, either in place or motion-compensated along the
input's optical flow, reset at the scene cuts :mod:`core.video.cuts` finds on the input.

State is explicit and serialisable (``state_dict`` / ``load_state_dict``). A chunk that follows another in
its lane carries the state that one saved (a single pass's frames, exactly); a lane's first chunk starts
cold and decodes :meth:`TemporalConfig.preroll_frames` frames before its start, which leaves the EMA within
a quarter code value of a single-pass render (see :func:`core.render.plan.plan_chunks`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import numpy as np

from core.presets import TemporalConfig
from core.quality.metrics import SsimTo
from core.video.cuts import REDUCED_SIDE, frame_signature, reduced
from core.video.flow import FlowEstimator, FlowPair, flow_to_previous
from core.video.frames import gray
from stylizers.base import Styled, compose


class FrameFeatures(NamedTuple):
    """What the temporal stage measures on one input frame, computed once (on the decoder's thread) and used
    for the cut test and the motion towards both of its neighbours."""

    signature: np.ndarray  # :func:`frame_signature`
    small: np.ndarray | None  # the small grey copy the flow runs on (flow mode), else None
    reduced: np.ndarray | None = None  # :func:`core.video.cuts.reduced` (RGB), which the metrics downscale to too


def frame_features(rgb: np.ndarray, motion: bool) -> FrameFeatures:
    """The cut signature and the flow's grey copy of one input frame, from one reduced copy of it."""
    small = reduced(rgb)
    grey = None
    if motion:
        grey = gray(small) if small.shape[:2] == _Motion.small_size(*rgb.shape[:2])[::-1] else _Motion.small(rgb)
    return FrameFeatures(frame_signature(small), grey, small)


def cut_distance(prev: FrameFeatures | None, cur: FrameFeatures) -> float:
    """What :meth:`CutDetector.distance` gives for ``cur`` after ``prev`` (None: the first frame), statelessly,
    so it can be measured ahead on another thread."""
    if prev is None:
        return 0.0
    return float(cv2.compareHist(prev.signature, cur.signature, cv2.HISTCMP_BHATTACHARYYA))


class Motion(NamedTuple):
    """How to pull the previous frame onto this one: ``flow`` ((H, W, 2) float32, each pixel's offset to where
    it was, for :func:`warp`), ``reliable`` ((H, W) float32, a 0..1 weight); and ``pair``, the small copies'
    flow they were scaled from, which is the metrics' own (:class:`core.quality.metrics.MetricsMeter` takes
    it instead of measuring it again)."""

    flow: np.ndarray
    reliable: np.ndarray
    pair: FlowPair


def warp(state: np.ndarray, motion: Motion) -> np.ndarray:
    """The past ``state`` pulled onto this frame, bilinear (cubic measured worse: its overshoot reads as
    flicker). The flow is a relative map (``WARP_RELATIVE_MAP``, OpenCV >= 4.10): no full-size pixel grid
    is added to it each frame (1.2 ms at 720p), and the pixels are the same as with absolute maps."""
    return cv2.remap(state, motion.flow, None, cv2.INTER_LINEAR | cv2.WARP_RELATIVE_MAP,
                     borderMode=cv2.BORDER_REPLICATE)


class _Motion:
    """Aligns last frame's state to this frame along the optical flow of the *input* frames.

    Flow (DIS, :mod:`core.video.flow`) runs on grey copies whose longer side is :data:`_FLOW_SIDE` and is scaled up
    to the frame; where the forward-backward check fails (occluded, revealed or badly matched pixels) the
    weight of the past is 0, so those pixels start fresh instead of smearing what moved away.
    """

    def __init__(self) -> None:
        self._est = FlowEstimator("fast")
        self._prev: np.ndarray | None = None  # last input frame, small grey uint8

    def reset(self) -> None:
        self._prev = None

    @staticmethod
    def small_size(h: int, w: int) -> tuple[int, int]:
        """(width, height) of the copy the flow runs on: longer side :data:`_FLOW_SIDE`, never under 8."""
        k = min(1.0, _FLOW_SIDE / max(h, w))
        return (w, h) if k == 1 else (max(8, round(w * k)), max(8, round(h * k)))

    @staticmethod
    def small(source: np.ndarray) -> np.ndarray:
        """The grey copy the flow runs on: longer side :data:`_FLOW_SIDE`."""
        size = _Motion.small_size(*source.shape[:2])
        return gray(source if size == source.shape[1::-1] else cv2.resize(source, size, interpolation=cv2.INTER_AREA))

    def step(self, source: np.ndarray) -> Motion | None:
        """Remember ``source`` ((H, W, 3) uint8 RGB input frame) and return how to pull the previous frame
        onto it (:class:`Motion`). None on the first frame after a reset, or when too little of the flow is
        reliable (a missed cut)."""
        small = self.small(source)
        prev, self._prev = self._prev, small
        return self.between(prev, small, source.shape[:2])

    def between(self, prev: np.ndarray | None, small: np.ndarray, size: tuple[int, int]) -> Motion | None:
        """What :meth:`step` returns for the frame of ``small`` (:meth:`small`) and ``size`` (h, w) after the
        frame of ``prev``, without state: motion can be measured ahead, on several threads (an instance
        each), and applied in order."""
        h, w = size
        if prev is None or prev.shape != small.shape:
            return None
        pair = flow_to_previous(self._est, prev, small)
        if pair.reliable.mean() < _MIN_RELIABLE:
            return None
        sh, sw = small.shape
        if (sh, sw) == (h, w):
            return Motion(pair.to_prev, pair.reliable.astype(np.float32), pair)
        # scaled to the frame's pixels on the small copy (bilinear resizing is linear: the same field)
        flow = cv2.resize(pair.to_prev * np.array([w / sw, h / sh], np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        reliable = cv2.resize(pair.reliable.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return Motion(flow, reliable, pair)


#: longer side of the frames the stabiliser's flow is computed on; the flow is scaled up to the frame
_FLOW_SIDE = REDUCED_SIDE  # the copy the cut signature is taken from: made once per frame
#: below this fraction of reliable flow, the frame is treated as a cut the histogram missed
_MIN_RELIABLE = 0.2
#: the stabiliser's compiled kernels (:func:`_kernel`)
BLEND_MODULE = "core.render.blend"
#: ``cv2.blendLinear``'s guard against a zero weight sum, in its denominator (the flow blend's kernel takes it)
BLEND_EPS = np.float32(1e-5)
#: ``cv2.transform`` matrix putting an RGB pixel's BT.601 luma into each of its three channels
_LUMA_ROWS = np.array([[0.299, 0.587, 0.114]] * 3, np.float32)
#: longer side of the copies the neural hold's SSIM is measured on (the flicker it trades against is
#: texture a few pixels wide, which a much smaller copy would average away)
_SSIM_SIDE = 480
#: bisection steps for the neural hold: its resolution is neural_luma / 2**steps
_HOLD_STEPS = 5


def neural_hold(past: np.ndarray, cur: np.ndarray, reliable: np.ndarray, most: float, floor: float) -> float:
    """The luma hold for one frame: the strongest in [0, ``most``] whose blend (the past weighing ``reliable``
    times the hold) keeps SSIM >= ``floor`` to ``cur``, what the model drew; by bisection (SSIM falls as the
    hold grows), on grey copies at most :data:`_SSIM_SIDE` on a side. ``past``: the warped past state."""
    h, w = cur.shape[:2]
    k = min(1.0, _SSIM_SIDE / max(h, w))
    size = (max(8, round(w * k)), max(8, round(h * k)))

    def grey(img: np.ndarray) -> np.ndarray:
        g = cv2.transform(img.astype(np.float32, copy=False), _LUMA_ROWS[:1])
        return g if k == 1 else cv2.resize(g, size, interpolation=cv2.INTER_AREA)

    p, c = grey(past), grey(cur)
    rel = reliable if k == 1 else cv2.resize(reliable, size, interpolation=cv2.INTER_AREA)
    if min(c.shape) < 7:
        return most
    score, diff = SsimTo(c), p - c

    def ok(s: float) -> bool:
        return score(c + diff * (rel * np.float32(s))) >= floor

    if ok(most):
        return most
    lo, hi = 0.0, most
    for _ in range(_HOLD_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def _kernel(name: str) -> Callable[..., None]:
    """A compiled kernel of :mod:`core.render.blend`, imported where a blend first runs: Numba takes ~0.15 s to
    import, which the processes that never blend (the CLI's own, an identity render) should not pay."""
    return getattr(importlib.import_module(BLEND_MODULE), name)


def _layers(styled: Styled) -> tuple[np.ndarray, np.ndarray | None]:
    """The layers as the blends take them: the base uint8 or float32, the lines float32 (what
    :class:`Styled` promises; another depth is cast, as the whole-frame blends did)."""
    base, lines = styled.base, styled.lines
    if base.dtype not in (np.uint8, np.float32):
        base = base.astype(np.float32)
    if lines is not None and lines.dtype != np.float32:
        lines = lines.astype(np.float32)
    return base, lines


class Stabiliser:
    """EMA over output layers, separately for base and lines: ``state = s * past + (1 - s) * current``.

    Line work gets its own (usually stronger) weight: edges flicker more than colour. ``reset()`` at a
    cut makes the next frame start fresh. Inputs are never modified.

    Modes (:attr:`TemporalConfig.mode`): ``"ema"`` blends with the past state where it was; ``"flow"`` first
    warps the past state along the input's optical flow (so moving content does not leave a ghost trail)
    and gives the past no weight where the flow is unreliable; ``"neural"`` warps like ``"flow"`` but
    weighs the past separately in luma and chroma (:meth:`_blend_neural`); ``"off"`` passes frames through.
    The weight of an ``n``-frame-old state is at most ``s**n`` in both modes, so the same pre-roll
    (:meth:`TemporalConfig.preroll_frames`) makes a chunked render equal a single pass; in flow mode the
    pre-roll frames feed the flow too.
    """

    def __init__(self, config: TemporalConfig, enabled: bool = True) -> None:
        on = enabled and config.mode in ("ema", "flow", "neural")
        neural = on and config.mode == "neural"
        self.s_base = np.float32(config.neural_luma if neural else config.strength if on else 0.0)
        self.s_chroma = np.float32(config.neural_chroma) if neural else None
        self.ssim_floor = config.neural_ssim if neural else 0.0
        self.last_hold: float | None = None  # the luma hold of the last neural frame (for measuring)
        self.s_lines = np.float32(config.lines_strength if on else 0.0)
        self._motion = _Motion() if on and config.mode in ("flow", "neural") else None
        self._local = threading.local()  # per-thread flow estimators for motion_between
        # flow mode: (H, W, 4) float32, the base in channels 0-2 and the lines in 3 (when ``_has_lines``); and
        # the buffer the state before it was in, which the next blend writes into
        self._state: np.ndarray | None = None
        self._spare: np.ndarray | None = None
        self._warped: np.ndarray | None = None  # flow mode: the past state pulled onto the current frame
        self._has_lines = False
        # EMA and neural modes: the base (H, W, 3) and the lines (H, W), float32
        self._base: np.ndarray | None = None
        self._lines: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """False when the stabiliser passes frames through (no state to keep or reset)."""
        return bool(self.s_base or self.s_lines or self.s_chroma)

    @property
    def compiled(self) -> tuple[str, ...]:
        """The modules of compiled kernels this stabiliser calls (each has a ``warm()``), for a render process
        to load before its first frame (:class:`core.render.pool.LocalPool`)."""
        return (BLEND_MODULE,) if self.active and self.s_chroma is None else ()

    @property
    def needs_source(self) -> bool:
        """True when each call must also get the input frame (flow mode)."""
        return self._motion is not None and self.active

    def reset(self) -> None:
        self._state = self._base = self._lines = None
        self._has_lines = False
        if self._motion is not None:
            self._motion.reset()

    @staticmethod
    def _blend_warped(state: np.ndarray | None, cur: np.ndarray, s: np.float32,
                      motion: Motion | None) -> np.ndarray:
        """The past :func:`warp`-ed, then a blend whose weight of the past is ``s`` where the flow is reliable
        and 0 where it is not."""
        cur = cur.astype(np.float32)
        if state is None or motion is None or state.shape != cur.shape or s == 0:
            return cur
        past, reliable = warp(state, motion), motion.reliable
        w_past = reliable * s
        return cv2.blendLinear(past, cur, w_past, 1.0 - w_past)

    def _blend_neural(self, state: np.ndarray | None, cur: np.ndarray, s_luma: np.float32, s_chroma: np.float32,
                      motion: Motion | None) -> np.ndarray:
        """:meth:`_blend_warped` with the past weighing ``s_luma`` in luma (BT.601) and ``s_chroma`` in
        chroma: a style network's flicker is mostly colour (its texture swaps hues from frame to frame) while
        its structure is what SSIM to the per-frame render measures, so colour can be held much longer than
        luma at the same loss of detail (measured on real clips, ``tests/render/test_temporal_neural.py``).
        The luma of the luma blend replaces the luma of the chroma blend; both are linear, so no colour
        conversion is needed. With an SSIM floor the luma hold is :func:`neural_hold`'s, per frame."""
        cur = cur.astype(np.float32)
        if state is None or motion is None or state.shape != cur.shape:
            self.last_hold = None
            return cur
        past, reliable = warp(state, motion), motion.reliable
        if self.ssim_floor > 0 and s_luma > 0:
            s_luma = np.float32(neural_hold(past, cur, reliable, float(s_luma), self.ssim_floor))
        self.last_hold = float(s_luma)
        w_luma, w_chroma = reliable * s_luma, reliable * s_chroma
        luma_blend = cv2.blendLinear(past, cur, w_luma, 1.0 - w_luma)
        chroma_blend = cv2.blendLinear(past, cur, w_chroma, 1.0 - w_chroma)
        # (luma of the difference) in each channel: adding it moves chroma_blend's luma to luma_blend's (which
        # can leave a saturated colour's channel just below 0: :meth:`apply` clamps what it composes)
        return cv2.add(chroma_blend, cv2.transform(cv2.subtract(luma_blend, chroma_blend), _LUMA_ROWS))

    def __call__(self, styled: Styled, source: np.ndarray | None = None) -> np.ndarray:
        """Stabilise one frame's layers -> (H, W, 3) uint8 RGB.

        ``source``: the input frame the layers were stylised from ((H, W, 3) uint8 RGB); flow mode needs
        it (the flow is measured on the input, whose texture is real), the other modes ignore it.
        """
        if self._motion is not None and self.active:
            if source is None:
                raise ValueError("temporal mode 'flow' or 'neural': the stabiliser needs the input frame (source=)")
            return self.apply(styled, self._motion.step(source))
        return self.apply(styled, None)

    def motion_between(self, prev: FrameFeatures | None, cur: FrameFeatures, size: tuple[int, int]) -> Motion | None:
        """The motion :meth:`__call__` would measure for a frame of ``size`` (h, w) with features ``cur``
        after the frame of ``prev`` (None: the first frame, or the first after a cut), measured now and
        statelessly. Thread-safe: each thread gets its own flow estimator. None outside flow mode."""
        if not self.needs_source or prev is None or prev.small is None or cur.small is None:
            return None
        local = self._local.__dict__
        if "motion" not in local:
            local["motion"] = _Motion()
        return local["motion"].between(prev.small, cur.small, size)

    def apply(self, styled: Styled, motion: Motion | None) -> np.ndarray:
        """Stabilise one frame's layers with motion measured ahead (:meth:`motion_between`); the same as
        :meth:`__call__` for the same frames in the same order, resets included."""
        if not self.active:
            return compose(styled.base, styled.lines, styled.ink)
        if self.s_chroma is not None:
            return self._apply_neural(styled, motion)
        if self._motion is None:
            return self._apply_ema(styled)
        return self._apply_flow(styled, motion)

    def _apply_neural(self, styled: Styled, motion: Motion | None) -> np.ndarray:
        if motion is None:  # first frame, or a cut the histograms missed: start fresh
            self._base = self._lines = None
        self._base = self._blend_neural(self._base, styled.base, self.s_base, self.s_chroma, motion)
        if styled.lines is not None:
            self._lines = self._blend_warped(self._lines, styled.lines, self.s_lines, motion)
        # the neural blend's base may dip below 0
        return compose(cv2.max(self._base, 0.0), self._lines if styled.lines is not None else None, styled.ink)

    def _apply_ema(self, styled: Styled) -> np.ndarray:
        """The EMA of both layers in place and their composition, in one compiled pass
        (:func:`core.render.blend.ema_compose`) with the pixels of the OpenCV calls it replaced."""
        base, lines = _layers(styled)
        h, w = base.shape[:2]
        fresh_base = self._base is None or self._base.shape != (h, w, 3) or self.s_base == 0
        if self._base is None or self._base.shape != (h, w, 3):
            self._base = np.zeros((h, w, 3), np.float32)  # zeros, not garbage: the kernel's copy multiplies by 0
        fresh_lines = self._lines is None or self._lines.shape != (h, w) or self.s_lines == 0
        if lines is not None and (self._lines is None or self._lines.shape != (h, w)):
            self._lines = np.zeros((h, w), np.float32)
        out = np.empty((h, w, 3), np.uint8)
        one, no = np.float32(1), np.float32(0)
        s_base, t_base = (no, one) if fresh_base else (self.s_base, one - self.s_base)
        s_lines, t_lines = (no, one) if fresh_lines else (self.s_lines, one - self.s_lines)
        if lines is None:  # no lines to lay: zero coverage, an exact copy; the lines' own state is left as it is
            cover = lines = np.zeros((h, w), np.float32)
            eps_ink = no
        else:
            cover, eps_ink = self._lines, BLEND_EPS
        _kernel("ema_compose")(self._base.ravel(), base.ravel(), cover.ravel(), lines.ravel(), s_base, t_base,
                               s_lines, t_lines, eps_ink, *[np.float32(v) for v in styled.ink], out.ravel())
        return out

    def _apply_flow(self, styled: Styled, motion: Motion | None) -> np.ndarray:
        """The flow blend of both layers and their composition: OpenCV warps the past state (:func:`warp`), then
        one compiled pass (:func:`core.render.blend.blend_compose`) blends, lays the lines over the base and
        rounds, with the pixels of the OpenCV calls it replaced.

        The state keeps the base and the lines in one 4-channel image because OpenCV warps that in 2.7 ms at
        720p, where a 3-channel image alone took 4.8-7.0 ms (its 3-channel remap has no vector path) and the
        lines another 2.2 ms. The whole frame is warped at once into a buffer kept for it: with OpenCV's ten
        blend passes, bands of 32 rows had kept the state in the core's cache (12.7-14.5 -> 9.4-10.1 ms a 720p
        frame), but with the warp and one compiled pass left, a whole-frame relative warp (no absolute map to
        add up per band) is cheaper: the blend's thread CPU in a 720p cartoon render 5.5-6.1 -> 4.7-5.0 ms."""
        base, lines = _layers(styled)
        h, w = base.shape[:2]
        past = self._state
        if past is None or past.shape[:2] != (h, w) or motion is None:
            past = None  # first frame, after a cut, or a cut the histograms missed: start fresh
        blend_base = past is not None and self.s_base != 0
        blend_lines = past is not None and lines is not None and self._has_lines and self.s_lines != 0
        if past is None:
            new = np.empty((h, w, 4), np.float32)
        else:  # the new state goes to the other buffer (the warp reads the past one)
            spare = self._spare
            new = spare if spare is not None and spare.shape == past.shape else np.empty_like(past)
        out = np.empty((h, w, 3), np.uint8)
        # a blend that does not happen is one with no weight and no epsilon: an exact copy (see the kernel)
        no = np.float32(0)
        s_base, eps_base = (self.s_base, BLEND_EPS) if blend_base else (no, no)
        s_lines, eps_lines = (self.s_lines, BLEND_EPS) if blend_lines else (no, no)
        eps_ink = BLEND_EPS if lines is not None else no
        ink = [np.float32(v) for v in styled.ink]
        if blend_base or blend_lines:
            warped = self._warped if self._warped is not None and self._warped.shape == past.shape else None
            old = self._warped = cv2.remap(past, motion.flow, None, cv2.INTER_LINEAR | cv2.WARP_RELATIVE_MAP,
                                           dst=warped, borderMode=cv2.BORDER_REPLICATE)
            rel = motion.reliable
        else:  # nothing to blend (a first frame): a past and weights of zeros, which the kernel multiplies by 0
            old, rel = np.zeros((h, w, 4), np.float32), np.zeros((h, w), np.float32)
        cover = np.zeros((h, w), np.float32) if lines is None else lines
        _kernel("blend_compose")(old.ravel(), base.ravel(), cover.ravel(), rel.ravel(), s_base, s_lines, eps_base,
                                 eps_lines, eps_ink, *ink, new.ravel(), out.ravel())
        if past is not None:
            self._spare = past
        self._state, self._has_lines = new, lines is not None
        return out

    def state_dict(self) -> dict[str, Any]:
        """The base ((H, W, 3) float32) and the lines ((H, W) float32) as separate layers, whatever the mode,
        and the flow's last small frame."""
        prev = None if self._motion is None or self._motion._prev is None else self._motion._prev.copy()
        base, lines = self._base, self._lines
        if self._state is not None:
            base = cv2.cvtColor(self._state, cv2.COLOR_RGBA2RGB)
            lines = cv2.extractChannel(self._state, 3) if self._has_lines else None
        return {"base": None if base is None else base.copy(), "lines": None if lines is None else lines.copy(),
                "flow_prev": prev}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reset()
        base = None if state.get("base") is None else np.asarray(state["base"], np.float32).copy()
        lines = None if state.get("lines") is None else np.asarray(state["lines"], np.float32).copy()
        if self._motion is None or self.s_chroma is not None or base is None:  # EMA or neural mode
            self._base, self._lines = base, lines
        else:
            self._state = cv2.cvtColor(base, cv2.COLOR_RGB2RGBA)
            if lines is not None:
                cv2.insertChannel(lines, self._state, 3)
                self._has_lines = True
        if self._motion is not None:
            prev = state.get("flow_prev")
            self._motion._prev = None if prev is None else np.asarray(prev, np.uint8).copy()
