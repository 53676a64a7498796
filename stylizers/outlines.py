"""Ink outlines shared by the line styles: Canny edges on a pre-filtered gray, widened to a pen width."""

from __future__ import annotations

import cv2
import numpy as np

from core.video.frames import gray, to_float


def ink_outlines(rgb: np.ndarray, low: int, high: int, width: int, *, median: bool = False,
                 soften: bool = False) -> np.ndarray | None:
    """(H, W, 3) uint8 -> (H, W) float32 ink coverage in [0, 1], or None when ``width`` is 0.

    ``median`` pre-filters with a 5x5 median (keeps flat cartoon areas clean) instead of a Gaussian
    (keeps fine detail for print styles); ``soften`` antialiases the widened lines slightly.
    """
    if width == 0:
        return None
    g = gray(rgb)
    g = cv2.medianBlur(g, 5) if median else cv2.GaussianBlur(g, (5, 5), 1.2)
    edges = cv2.Canny(g, low, high)
    if width > 1:
        edges = cv2.dilate(edges, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width)))
    lines = to_float(edges)
    return cv2.GaussianBlur(lines, (3, 3), 0.6) if soften else lines
