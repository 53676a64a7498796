"""Scene cuts found on the input frames: a histogram distance between consecutive frames.

The renderer's temporal stage resets at these cuts, and shot analysis and the metrics split a clip with the
same rule, so all three agree on where a shot ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

_THUMB = (96, 54)
#: a frame's longer side is first reduced to this (area filter) on the way to the thumbnail: an area
#: resize by a whole factor (4x at 720p, 6x at 1080p) is OpenCV's fast path, and the renderer's stabiliser
#: runs its flow on this same copy, so it is made once (:func:`reduced`); straight to 96x54 cost 2.2 ms
REDUCED_SIDE = 320


def reduced(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with its longer side at most :data:`REDUCED_SIDE` (area filter): what :func:`frame_signature`
    takes its thumbnail from."""
    h, w = rgb.shape[:2]
    if max(h, w) <= REDUCED_SIDE:
        return rgb
    k = REDUCED_SIDE / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def frame_signature(rgb: np.ndarray) -> np.ndarray:
    """A normalised 8x8x8 RGB histogram of a thumbnail: cheap, and stable under motion within a shot. The
    same for a frame and its :func:`reduced` copy."""
    thumb = cv2.resize(reduced(rgb), _THUMB, interpolation=cv2.INTER_AREA)
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
