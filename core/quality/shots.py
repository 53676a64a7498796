"""Shot analysis: what makes a clip hard to stylise, shot by shot.

One decode pass over the input finds the shots (with the renderer's own cut rule, :class:`CutDetector`)
and scores each on nine measures a stylizer and the temporal stage care about. Every score is a float in
[0, 1], higher meaning "more of it":

==============  ===================================================================================
``motion``      mean optical-flow speed, as a fraction of the frame's long side per frame; 0.5 at 1 %
``zoom``        |flow divergence| / 2: the relative scale change per frame (camera zoom / dolly); 0.5 at
                0.5 % a frame
``blur``        Crete et al. (2007) no-reference blur on native-resolution luma: ~0.2-0.3 sharp, 1 flat
``noise``       Immerkaer (1996) noise sigma on native-resolution luma, edges excluded; 0.5 at 3 code values
``brightness``  mean luma / 255
``contrast``    RMS contrast: luma standard deviation / 127.5
``colourfulness``  Hasler & Suesstrunk (2003) M; 0.5 at M = 45 ("averagely colourful")
``texture``     Canny edge-pixel density of the analysis copy; 0.5 at 6 % of pixels
``cut_rate``    cuts per second within 2 s of the shot; 0.5 at one cut every 4 s
==============  ===================================================================================

Unbounded measures are mapped with ``x / (x + half)`` (``half`` as in the table): monotone, 0 at 0, 0.5 at
``half``, never above 1. A weighted mean of the scores that make rendering hard (:data:`DIFFICULTY_WEIGHTS`)
gives ``difficulty_score`` and its class (easy / medium / hard).

Cost: the analysis runs on a copy scaled to ``long_side`` pixels (swscale, straight from the decoder's YUV),
measures flow and the per-frame scores on every ``every``-th frame of a shot, and blur/noise on a
native-resolution luma crop of every other one of those (scaling would hide both). Cut detection still sees
every frame. At 720p that is ~5 ms of CPU a frame with ``every=2`` and ~4 ms with ``every=4``, half of it the
decode itself (a loaded 2-core machine; a cartoon render takes ~40 ms a frame per worker).

How long a render will take is :mod:`core.render.cost`'s question; it reads the difficulty measured here.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from core.errors import ConfigError
from core.presets import TemporalConfig
from core.video.cuts import CutDetector
from core.video.flow import FlowEstimator, backward_warp
from core.video.frames import ColorTags, gray, rotate_upright
from core.video.probe import VideoInfo, probe
from core.video.reader import Reader

log = logging.getLogger(__name__)

SCORE_NAMES = ("motion", "zoom", "blur", "noise", "brightness", "contrast", "colourfulness", "texture", "cut_rate")

#: Points where each unbounded measure scores 0.5 (see the module docstring for the units).
HALF = {"motion": 0.01, "zoom": 0.005, "noise": 3.0, "colourfulness": 45.0, "texture": 0.06, "cut_rate": 0.25}

#: What makes a shot hard to stylise well: motion and zoom (temporal flicker, warping), noise (crawling
#: edges and flicker), texture (cluttered line work), frequent cuts (short EMA history) and blur (soft
#: edges the outline detectors miss). Chosen by judgement, not fitted: they only rank shots.
DIFFICULTY_WEIGHTS = {"motion": 0.3, "zoom": 0.1, "noise": 0.2, "texture": 0.2, "cut_rate": 0.1, "blur": 0.1}

#: ``difficulty_score`` below the first bound is "easy", below the second "medium", else "hard".
DIFFICULTY_BOUNDS = (0.3, 0.45)

#: Side of the native-resolution luma crop used for blur and noise, and how often (in analysed frames):
#: they change slowly within a shot, and are the dearest per-frame measures.
_CROP = 256
_DETAIL_EVERY = 2
#: Seconds either side of a shot counted for its cut rate.
_CUT_WINDOW_S = 2.0
_LUMA_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}


def squash(x: float, half: float) -> float:
    """Map a non-negative measure to [0, 1): ``x / (x + half)``, 0.5 at ``half``; monotone increasing."""
    x = max(0.0, float(x))
    return x / (x + half)


# ------------------------------------------------------------------------------------ per-frame measures


def blur_effect(luma: np.ndarray) -> float:
    """Crete et al. 2007 no-reference blur of (H, W) uint8 luma -> float in [0, 1] (1 = no detail left).

    Re-blurs the image with a 9-tap box filter and measures how much of its neighbour-to-neighbour variation
    survives: a sharp image loses a lot, a blurred one little. The larger of the horizontal and vertical
    values is returned. Being a ratio, it does not depend on how much texture there is, unlike the variance
    of the Laplacian. A flat image returns 1. (OpenCV calls throughout: 4x faster than NumPy here.)
    """
    f = luma.astype(np.float32)
    out = 0.0
    for ksize, a, b in (((1, 9), np.s_[1:, :], np.s_[:-1, :]), ((9, 1), np.s_[:, 1:], np.s_[:, :-1])):
        blurred = cv2.blur(f, ksize)
        d_f = cv2.absdiff(f[a], f[b])
        d_b = cv2.absdiff(blurred[a], blurred[b])
        s_f = cv2.sumElems(d_f)[0]
        if s_f <= 0:
            return 1.0
        s_v = cv2.sumElems(cv2.max(cv2.subtract(d_f, d_b), 0.0))[0]
        out = max(out, (s_f - s_v) / s_f)
    return float(min(1.0, max(0.0, out)))


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_sigma(luma: np.ndarray) -> float:
    """Immerkaer 1996 fast noise estimate of (H, W) uint8 luma -> sigma in code values (>= 0).

    The 3x3 kernel is the difference of two Laplacians, blind to flat areas, ramps and most edges; what
    survives is noise. The 10 % of pixels with the strongest gradient are still excluded (corners and thin
    lines leak through). For pure Gaussian noise ``E|conv| = 6 sigma sqrt(2 / pi)``.
    """
    if min(luma.shape) < 8:
        return 0.0
    f = luma.astype(np.float32)
    conv = cv2.absdiff(cv2.filter2D(f, -1, _IMMERKAER), 0.0)[1:-1, 1:-1]
    grad = cv2.magnitude(cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    limit = float(np.percentile(grad[::3, ::3], 90))  # a subsample is plenty for a percentile
    keep = (grad <= limit).astype(np.uint8)
    if not keep.any():
        return 0.0
    return float(math.sqrt(math.pi / 2) * cv2.mean(conv, mask=keep)[0] / 6.0)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk 2003 colourfulness M of (H, W, 3) uint8 RGB -> float >= 0 (0 grey, ~110 extreme)."""
    r, g, b = cv2.split(rgb.astype(np.float32))
    rg = cv2.subtract(r, g)
    yb = cv2.subtract(cv2.addWeighted(r, 0.5, g, 0.5, 0.0), b)
    (m_rg,), (s_rg,) = cv2.meanStdDev(rg)
    (m_yb,), (s_yb,) = cv2.meanStdDev(yb)
    return float(math.hypot(s_rg[0], s_yb[0]) + 0.3 * math.hypot(m_rg[0], m_yb[0]))


def edge_density(grey: np.ndarray) -> float:
    """Fraction of (H, W) uint8 pixels on a Canny edge (fixed thresholds 64/160, so frames compare) in [0, 1]."""
    return float(np.count_nonzero(cv2.Canny(grey, 64, 160))) / grey.size


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ShotAnalysis:
    """One shot, frames ``start <= i < end``: nine scores in [0, 1] (module docstring) and its difficulty."""

    start: int
    end: int
    motion: float
    zoom: float
    blur: float
    noise: float
    brightness: float
    contrast: float
    colourfulness: float
    texture: float
    cut_rate: float
    difficulty_score: float
    difficulty: str  # "easy" | "medium" | "hard"

    @property
    def frames(self) -> int:
        return self.end - self.start

    def scores(self) -> dict[str, float]:
        """The nine scores by name, in :data:`SCORE_NAMES` order."""
        return {k: getattr(self, k) for k in SCORE_NAMES}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def difficulty_of(scores: Mapping[str, float]) -> tuple[float, str]:
    """(score in [0, 1], class) from a mapping of the nine scores: the :data:`DIFFICULTY_WEIGHTS` mean."""
    total = sum(DIFFICULTY_WEIGHTS.values())
    value = sum(w * float(scores[k]) for k, w in DIFFICULTY_WEIGHTS.items()) / total
    lo, hi = DIFFICULTY_BOUNDS
    return value, "easy" if value < lo else "medium" if value < hi else "hard"


@dataclass(frozen=True, eq=False)
class ClipAnalysis:
    """The analysis of one clip: its shots and the per-frame arrays worst-frames sampling ranks by.

    Per-frame arrays have one float32 entry per frame, in [0, 1]: ``cut_distance`` (the
    :class:`CutDetector` histogram distance to the previous frame, every frame), ``motion`` (motion score of
    the flow pair that frame lies in), ``residual`` (mean absolute grey difference left after warping the
    previous analysed frame onto this one along the flow: where flow-based stabilisation will struggle,
    occlusions and non-rigid change) and ``complexity`` (texture score of the nearest analysed frame at or
    before it). ``analysed`` marks the frames that were measured; the others carry their neighbour's value.
    """

    path: str
    frame_count: int
    fps: float
    width: int
    height: int
    analysis_size: tuple[int, int]
    every: int
    shots: list[ShotAnalysis]
    cut_distance: np.ndarray = field(repr=False)
    motion: np.ndarray = field(repr=False)
    residual: np.ndarray = field(repr=False)
    complexity: np.ndarray = field(repr=False)
    analysed: np.ndarray = field(repr=False)
    seconds: float = 0.0

    @property
    def cuts(self) -> list[int]:
        """Frame indices that start a new shot (the first frame of the clip is not a cut)."""
        return [s.start for s in self.shots[1:]]

    def shot_of(self, index: int) -> int:
        """Which shot (position in :attr:`shots`) holds frame ``index``."""
        starts = [s.start for s in self.shots]
        return int(np.searchsorted(starts, index, side="right")) - 1

    def summary(self) -> dict[str, float]:
        """Frame-weighted means of the nine scores and of ``difficulty_score`` over the clip (for history)."""
        n = max(1, sum(s.frames for s in self.shots))
        out = {k: sum(getattr(s, k) * s.frames for s in self.shots) / n for k in SCORE_NAMES}
        out["difficulty_score"] = sum(s.difficulty_score * s.frames for s in self.shots) / n
        return {k: round(v, 4) for k, v in out.items()}

    @property
    def difficulty_score(self) -> float:
        return self.summary()["difficulty_score"]

    def to_json(self, per_frame: bool = False) -> dict[str, Any]:
        """A JSON-ready report: clip facts, shots, the clip summary (and the per-frame arrays if asked)."""
        d: dict[str, Any] = {
            "path": self.path, "frames": self.frame_count, "fps": round(self.fps, 6), "width": self.width,
            "height": self.height, "analysis_size": list(self.analysis_size), "every": self.every,
            "seconds": round(self.seconds, 3),
            "ms_per_frame": round(1000 * self.seconds / max(1, self.frame_count), 3),
            "cuts": self.cuts, "summary": self.summary(),
            "difficulty": difficulty_of(self.summary())[1],
            "shots": [s.to_json() for s in self.shots],
        }
        if per_frame:
            for k in ("cut_distance", "motion", "residual", "complexity"):
                d[k] = [round(float(v), 4) for v in getattr(self, k)]
        return d


# ------------------------------------------------------------------------------------------- the pass


def _scaled_size(w: int, h: int, long_side: int) -> tuple[int, int]:
    """(w, h) scaled so the long side is at most ``long_side`` (never up), aspect kept, at least 16 px."""
    s = min(1.0, long_side / max(w, h))
    return max(16, round(w * s)), max(16, round(h * s))


class _Decoded:
    """Converts the decoder's frames for analysis: small RGB (also what cut detection sees), a luma crop.

    These conversions go straight from the decoder's YUV with swscale (the frame contract's full-size RGB
    costs ~2 ms a 720p frame, a fifth of the analysis budget). They honour the stream's colour matrix and
    range like :func:`core.video.frames.av_to_rgb`; TODO(frames): move them there as a ``size=`` option.
    """

    def __init__(self, info: VideoInfo, long_side: int) -> None:
        self.info = info
        cw, ch = _scaled_size(info.coded_width, info.coded_height, long_side)
        self.coded_small = (cw, ch)
        self.small_size = (ch, cw) if info.rotation in (90, 270) else (cw, ch)
        self._tags: ColorTags = info.color
        self._rf_small = VideoReformatter()
        self._rf_gray = VideoReformatter()

    def small(self, frame: av.VideoFrame) -> np.ndarray:
        """(h, w, 3) uint8 RGB, upright, long side at most ``long_side`` (area-averaged, like a thumbnail)."""
        out = self._rf_small.reformat(
            frame, width=self.coded_small[0], height=self.coded_small[1], format="rgb24",
            src_colorspace=self._tags.sws_name, src_color_range=2 if self._tags.full_range else 1,
            dst_color_range=2, interpolation="AREA").to_ndarray()
        return rotate_upright(np.ascontiguousarray(out), self.info.rotation)

    def luma_crop(self, frame: av.VideoFrame) -> np.ndarray:
        """(<=256, <=256) uint8 native-resolution luma from the centre (coded orientation: rotation does not
        change blur or noise). 8-bit YUV planes are read in place; other formats go through swscale."""
        if frame.format.name in _LUMA_FORMATS:
            plane = frame.planes[0]
            y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
        else:
            y = self._rf_gray.reformat(frame, format="gray").to_ndarray()
        h, w = y.shape
        ch, cw = min(h, _CROP), min(w, _CROP)
        top, left = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(y[top:top + ch, left:left + cw])


@dataclass
class _Measure:
    """What one analysed frame gave."""

    index: int
    shot: int
    stats: dict[str, float]


def _frame_stats(rgb: np.ndarray, grey: np.ndarray) -> dict[str, float]:
    """Scores of one analysis-size frame: brightness, contrast, colourfulness, texture."""
    mean, std = cv2.meanStdDev(grey)
    return {
        "brightness": float(mean[0, 0]) / 255.0,
        "contrast": min(1.0, float(std[0, 0]) / 127.5),
        "colourfulness": squash(colourfulness(rgb), HALF["colourfulness"]),
        "texture": squash(edge_density(grey), HALF["texture"]),
    }


def _detail_stats(luma: np.ndarray) -> dict[str, float]:
    """Scores of a native-resolution luma crop: blur and noise (scaling down would hide both)."""
    return {"blur": blur_effect(luma), "noise": squash(noise_sigma(luma), HALF["noise"])}


def _pair_stats(est: FlowEstimator, prev: np.ndarray, cur: np.ndarray, gap: int) -> tuple[float, float, float]:
    """(motion score, zoom score, residual) between two analysed grey frames ``gap`` frames apart."""
    flow = est(cur, prev)  # cur -> prev: pulls prev onto cur's grid
    h, w = cur.shape
    speed = float(np.mean(cv2.magnitude(flow[..., 0], flow[..., 1]))) / gap / max(h, w)
    zoom = abs(_robust_divergence(flow)) / 2.0 / gap
    residual = float(cv2.absdiff(backward_warp(prev, flow), cur).mean()) / 255.0
    return squash(speed, HALF["motion"]), squash(zoom, HALF["zoom"]), residual


def _robust_divergence(flow: np.ndarray, grid: int = 6) -> float:
    """The camera's divergence of an (H, W, 2) flow: the median over a ``grid`` x ``grid`` of blocks of each
    block's mean divergence, away from the border where DIS extrapolates.

    A zoom makes every block diverge by the same amount; a moving object only makes the few blocks its
    outline crosses diverge (:func:`core.video.flow.divergence`, the mean over the frame, would count them), so
    the median ignores it. Central differences as ``np.gradient``, done with OpenCV (10x faster).
    """
    h, w = flow.shape[:2]
    my, mx = max(1, h // 10), max(1, w // 10)
    u, v = cv2.split(flow)
    du = cv2.Sobel(u, cv2.CV_32F, 1, 0, ksize=1, scale=0.5)
    dv = cv2.Sobel(v, cv2.CV_32F, 0, 1, ksize=1, scale=0.5)
    inner = cv2.add(du, dv)[my:h - my, mx:w - mx]
    if min(inner.shape) < grid:
        return float(inner.mean())
    return float(np.median(cv2.resize(inner, (grid, grid), interpolation=cv2.INTER_AREA)))


def analyze(path: str | Path, *, every: int = 2, long_side: int = 256,
            on_progress: Callable[[int, int], None] | None = None,
            cut_threshold: float | None = None) -> ClipAnalysis:
    """Analyse a clip: shots (the renderer's cut rule), nine scores per shot, per-frame arrays for sampling.

    ``every``: flow and per-frame scores on every ``every``-th frame of each shot (plus each shot's first
    frame); cut detection sees every frame. ``long_side``: the analysis copy's long side in pixels.
    ``cut_threshold``: default the preset's (:class:`TemporalConfig`). ``on_progress(done, total)`` is called
    every few frames. Raises MediaNotFoundError / UnsupportedVideoError naming the file, ValueError for a bad
    ``every`` or ``long_side``.
    """
    if not isinstance(every, int) or every < 1:
        raise ConfigError(f"analyze: every must be an integer >= 1, got {every!r}")
    if not isinstance(long_side, int) or long_side < 32:
        raise ConfigError(f"analyze: long_side must be an integer >= 32, got {long_side!r}")
    t0 = time.perf_counter()
    info = probe(path)
    n = info.frame_count
    conv = _Decoded(info, long_side)
    cuts = CutDetector(TemporalConfig().cut_threshold if cut_threshold is None else cut_threshold)
    est = FlowEstimator("ultrafast")
    cut_distance = np.zeros(n, np.float32)
    motion = np.zeros(n, np.float32)
    residual = np.zeros(n, np.float32)
    measures: list[_Measure] = []
    shot_starts = [0]
    prev_grey: np.ndarray | None = None
    prev_index = 0
    with Reader(info) as reader:
        for i, frame in reader.decoded(0, n):
            rgb = conv.small(frame)
            d = cuts.distance(rgb)
            cut_distance[i] = d
            if i > 0 and d > cuts.threshold:
                shot_starts.append(i)
                prev_grey = None
            start = shot_starts[-1]
            if (i - start) % every == 0:
                grey = gray(rgb)
                stats = _frame_stats(rgb, grey)
                if (i - start) % (every * _DETAIL_EVERY) == 0:
                    stats.update(_detail_stats(conv.luma_crop(frame)))
                if prev_grey is not None:
                    m, z, r = _pair_stats(est, prev_grey, grey, i - prev_index)
                    stats.update(motion=m, zoom=z)
                    motion[prev_index + 1:i + 1] = m
                    residual[prev_index + 1:i + 1] = r
                measures.append(_Measure(i, len(shot_starts) - 1, stats))
                prev_grey, prev_index = grey, i
            if on_progress is not None and (i % 25 == 24 or i == n - 1):
                on_progress(i + 1, n)
    analysed = np.zeros(n, bool)
    analysed[[m.index for m in measures]] = True
    complexity = _fill_forward(n, [(m.index, m.stats["texture"]) for m in measures])
    shots = _shots(shot_starts, n, float(info.fps), measures)
    return ClipAnalysis(
        path=info.path, frame_count=n, fps=float(info.fps), width=info.width, height=info.height,
        analysis_size=conv.small_size, every=every, shots=shots, cut_distance=cut_distance, motion=motion,
        residual=residual, complexity=complexity, analysed=analysed, seconds=time.perf_counter() - t0)


def _fill_forward(n: int, points: list[tuple[int, float]]) -> np.ndarray:
    """(n,) float32: each frame takes the value of the last point at or before it (the first point before)."""
    out = np.zeros(n, np.float32)
    if not points:
        return out
    idx = np.array([p[0] for p in points])
    val = np.array([p[1] for p in points], np.float32)
    pos = np.clip(np.searchsorted(idx, np.arange(n), side="right") - 1, 0, len(idx) - 1)
    out[:] = val[pos]
    return out


def _shots(starts: list[int], n: int, fps: float, measures: list[_Measure]) -> list[ShotAnalysis]:
    """Aggregate analysed frames into shots: the mean of each score over the shot's measured frames."""
    ends = [*starts[1:], n]
    cut_list = np.asarray(starts[1:], np.int64)
    pad = _CUT_WINDOW_S * fps
    shots = []
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        ms = [m.stats for m in measures if m.shot == k]
        scores = {}
        for name in ("brightness", "contrast", "colourfulness", "texture"):
            scores[name] = float(np.mean([s[name] for s in ms]))
        for name in ("blur", "noise", "motion", "zoom"):  # not on every analysed frame; motion not on the first
            vals = [s[name] for s in ms if name in s]
            scores[name] = float(np.mean(vals)) if vals else 0.0
        lo, hi = max(0.0, start - pad), min(float(n), end + pad)
        count = int(np.count_nonzero((cut_list >= lo) & (cut_list <= hi)))
        scores["cut_rate"] = squash(count / max((hi - lo) / fps, 1e-9), HALF["cut_rate"])
        value, level = difficulty_of(scores)
        shots.append(ShotAnalysis(start=start, end=end, **{k: scores[k] for k in SCORE_NAMES},
                                  difficulty_score=value, difficulty=level))
    return shots


# ------------------------------------------------------------------------------------ render history


# ------------------------------------------------------------------------------------ render-cost model


