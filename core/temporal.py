"""Temporal stage: scene-cut detection on the input and EMA stabilisation of the stylized layers.

State is explicit and serialisable (``state_dict`` / ``load_state_dict``). Chunks cross their edges by
pre-roll instead of carrying state: a chunk decodes :meth:`TemporalConfig.preroll_frames` frames before
its start, which leaves the EMA within a quarter code value of a single-pass render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from stylizers.base import Styled, compose

from .presets import TemporalConfig

_THUMB = (96, 54)


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """A normalised 8x8x8 RGB histogram of a thumbnail: cheap, and stable under motion within a shot."""
    thumb = cv2.resize(rgb, _THUMB, interpolation=cv2.INTER_AREA)
    hist = cv2.calcHist([thumb], [0, 1, 2], None, [8, 8, 8], [0, 256, 0, 256, 0, 256])
    return cv2.normalize(hist, None, 1.0, 0.0, cv2.NORM_L1).astype(np.float32)


@dataclass
class CutDetector:
    """Declares a cut when consecutive input frames' histograms differ by more than ``threshold``.

    Looks only at frames t-1 and t, so a chunk that decodes one frame of pre-roll finds exactly the cuts
    a single pass finds.
    """

    threshold: float
    _prev: np.ndarray | None = field(default=None, repr=False)

    def distance(self, rgb: np.ndarray) -> float:
        """Histogram distance to the previous frame (0 for the first frame), and remember this one."""
        sig = frame_signature(rgb)
        d = 0.0 if self._prev is None else float(cv2.compareHist(self._prev, sig, cv2.HISTCMP_BHATTACHARYYA))
        self._prev = sig
        return d

    def is_cut(self, rgb: np.ndarray) -> bool:
        return self.distance(rgb) > self.threshold

    def state_dict(self) -> dict[str, Any]:
        return {"prev": None if self._prev is None else self._prev.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        prev = state.get("prev")
        self._prev = None if prev is None else np.asarray(prev, np.float32).copy()


class Stabiliser:
    """EMA over output layers: ``state = s * state + (1 - s) * current``, separately for base and lines.

    Line work gets its own (usually stronger) weight: edges flicker more than colour. ``reset()`` at a
    cut makes the next frame start fresh. Inputs are never modified.
    """

    def __init__(self, config: TemporalConfig, enabled: bool = True) -> None:
        on = enabled and config.mode == "ema"
        self.s_base = np.float32(config.strength if on else 0.0)
        self.s_lines = np.float32(config.lines_strength if on else 0.0)
        self._base: np.ndarray | None = None
        self._lines: np.ndarray | None = None

    @property
    def active(self) -> bool:
        """False when the stabiliser passes frames through (no state to keep or reset)."""
        return bool(self.s_base or self.s_lines)

    def reset(self) -> None:
        self._base = None
        self._lines = None

    @staticmethod
    def _blend(state: np.ndarray | None, cur: np.ndarray, s: np.float32) -> np.ndarray:
        cur = cur.astype(np.float32)
        if state is None or state.shape != cur.shape or s == 0:
            return cur
        # state += (1 - s) * (cur - state), in place on our own buffer
        cv2.addWeighted(state, float(s), cur, float(1 - s), 0.0, dst=state)
        return state

    def __call__(self, styled: Styled) -> np.ndarray:
        """Stabilise one frame's layers -> (H, W, 3) uint8 RGB."""
        if self.s_base == 0 and self.s_lines == 0:
            return compose(styled.base, styled.lines, styled.ink)
        self._base = self._blend(self._base, styled.base, self.s_base)
        if styled.lines is not None:
            self._lines = self._blend(self._lines, styled.lines, self.s_lines)
        return compose(self._base, self._lines if styled.lines is not None else None, styled.ink)

    def state_dict(self) -> dict[str, Any]:
        return {"base": None if self._base is None else self._base.copy(),
                "lines": None if self._lines is None else self._lines.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._base = None if state.get("base") is None else np.asarray(state["base"], np.float32).copy()
        self._lines = None if state.get("lines") is None else np.asarray(state["lines"], np.float32).copy()
