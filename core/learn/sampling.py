"""Worst frames first: which K frames of a clip to preview or tune on.

The first K frames of a clip are usually its easiest (one shot, settling camera). Previews and parameter
tuning learn more from the frames a style gets wrong: a scene cut (the temporal state restarts), the
fastest motion, the largest warping error (where the output flickers or smears) and the busiest picture.
:func:`worst_frames` takes turns among those reasons and spreads its picks over the clip and its shots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.quality.shots import ClipAnalysis

REASONS = ("cut", "motion", "warping_error", "complexity")

#: Weight of "far from every frame picked so far" against the reason's own score (both in [0, 1]): enough to
#: spread picks when scores are flat, too little to pass over a clear peak.
_SPREAD = 0.25


@dataclass(frozen=True)
class FramePick:
    """One picked frame: its index, why it was picked (one of :data:`REASONS`) and that reason's score in
    [0, 1] (the frame's value over the clip's largest for that reason; for a cut, the histogram distance)."""

    index: int
    reason: str
    score: float


def worst_frames(path: str | Path, k: int, *, analysis: ClipAnalysis | None = None,
                 warping_error: Mapping[int, float] | None = None) -> list[FramePick]:
    """Pick ``k`` distinct frames of the clip at ``path``, hardest first, returned sorted by index.

    Cuts come first (at most a quarter of ``k``, largest histogram distance first), then the reasons
    "motion", "warping_error" and "complexity" take turns, each taking its best frame that is not too close
    to one already picked (the minimum gap shrinks only when nothing else is left) and whose shot does not
    already have its share of ``k`` (shots by frame count). ``k`` >= the frame count gives every frame.

    ``analysis``: a :class:`core.quality.shots.ClipAnalysis` of the same clip (computed when None).
    ``warping_error``: frame index -> warping error of a rendered output (any non-negative scale; e.g. from
    the metrics of a preview render); without it, the analysis's input residual after flow compensation
    stands in. Raises ValueError for a negative ``k``, an index outside the clip or a non-finite error.
    """
    from core.quality.shots import ClipAnalysis, analyze

    if not isinstance(k, int) or k < 0:
        raise ValueError(f"worst_frames: k must be an integer >= 0, got {k!r}")
    if analysis is None:
        analysis = analyze(path)
    if not isinstance(analysis, ClipAnalysis):
        raise ValueError(f"worst_frames: analysis must be a ClipAnalysis of {path}, got {type(analysis).__name__}")
    n = analysis.frame_count
    if k == 0 or n == 0:
        return []
    scores = _reason_scores(analysis, warping_error)
    if k >= n:
        return _every_frame(n, analysis.cuts, scores)
    return _Picker(analysis, scores, k).run()


def _normalised(x: np.ndarray) -> np.ndarray:
    """Values over the largest (finite ones), NaN kept as "no value"; all zeros when the largest is 0."""
    top = np.nanmax(x) if np.isfinite(x).any() else 0.0
    return x / top if top > 0 else np.where(np.isnan(x), np.nan, 0.0)


def _reason_scores(analysis: ClipAnalysis, warping_error: Mapping[int, float] | None) -> dict[str, np.ndarray]:
    """Per reason, an (n,) float64 array in [0, 1]; NaN where the reason has nothing to say about a frame."""
    n = analysis.frame_count
    cut = np.full(n, np.nan)
    for c in analysis.cuts:
        cut[c] = float(analysis.cut_distance[c])
    if warping_error is None:
        warp = analysis.residual.astype(np.float64)
    else:
        warp = np.full(n, np.nan)
        for i, v in warping_error.items():
            if not 0 <= int(i) < n:
                raise ValueError(f"worst_frames: warping_error has frame {i}, outside 0..{n - 1}")
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"worst_frames: warping_error[{i}] must be finite and >= 0, got {v!r}")
            warp[int(i)] = float(v)
    return {"cut": np.clip(cut, 0.0, 1.0), "motion": _normalised(analysis.motion.astype(np.float64)),
            "warping_error": _normalised(warp), "complexity": _normalised(analysis.complexity.astype(np.float64))}


def _every_frame(n: int, cuts: list[int], scores: dict[str, np.ndarray]) -> list[FramePick]:
    """All frames, each labelled with its cut or else its strongest reason."""
    out = []
    cut_set = set(cuts)
    for i in range(n):
        if i in cut_set:
            out.append(FramePick(i, "cut", float(scores["cut"][i])))
            continue
        reason, value = max(((r, scores[r][i]) for r in REASONS[1:] if not np.isnan(scores[r][i])),
                            key=lambda rv: rv[1], default=("complexity", 0.0))
        out.append(FramePick(i, reason, float(value)))
    return out


class _Picker:
    """The greedy choice of :func:`worst_frames` (state: what is picked, distances, picks per shot)."""

    def __init__(self, analysis: ClipAnalysis, scores: dict[str, np.ndarray], k: int) -> None:
        self.n, self.k, self.scores = analysis.frame_count, k, scores
        self.cuts = analysis.cuts
        starts = np.array([s.start for s in analysis.shots])
        lengths = np.array([s.frames for s in analysis.shots], np.float64)
        self.shot = np.searchsorted(starts, np.arange(self.n), side="right") - 1
        self.share = np.maximum(k * lengths / self.n, 1e-9)  # the picks each shot would get by its length
        self.in_shot = np.zeros(len(starts))
        self.dist = np.full(self.n, float(self.n))  # frames to the nearest pick
        self.gap = max(1, self.n // (2 * k))
        self.picks: dict[int, FramePick] = {}

    def take(self, i: int, reason: str, score: float) -> None:
        self.picks[i] = FramePick(i, reason, float(score))
        self.in_shot[self.shot[i]] += 1
        self.dist = np.minimum(self.dist, np.abs(np.arange(self.n) - i))

    def best(self, reason: str) -> int | None:
        """The frame to take for ``reason`` now, or None when no frame at least ``gap`` from the picks has one."""
        s = self.scores[reason]
        ok = ~np.isnan(s) & (self.dist >= self.gap)
        if not ok.any():
            return None
        penalty = 0.5 ** (self.in_shot[self.shot] / self.share[self.shot])
        value = np.where(ok, np.nan_to_num(s) * penalty + _SPREAD * np.minimum(1.0, self.dist * self.k / self.n),
                         -np.inf)
        return int(np.argmax(value))

    def run(self) -> list[FramePick]:
        for c in sorted(self.cuts, key=lambda c: -self.scores["cut"][c])[: max(1, self.k // 4)]:
            if self.dist[c] >= self.gap:
                self.take(c, "cut", self.scores["cut"][c])
        turns = [r for r in REASONS[1:] if not np.isnan(self.scores[r]).all()] or ["complexity"]
        turn = 0
        while len(self.picks) < self.k:
            found = False
            for _ in turns:
                reason = turns[turn % len(turns)]
                turn += 1
                i = self.best(reason)
                if i is not None:
                    self.take(i, reason, np.nan_to_num(self.scores[reason][i]))
                    found = True
                    break
            if not found:
                if self.gap == 1:  # every scored frame is taken: fill with the frames farthest from the picks
                    i = int(np.argmax(self.dist))
                    self.take(i, "complexity", np.nan_to_num(self.scores["complexity"][i]))
                else:
                    self.gap = max(1, self.gap // 2)
        return sorted(self.picks.values(), key=lambda p: p.index)
