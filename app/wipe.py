"""A before/after wipe: two frames of one size shown as one, split at a vertical line."""

from __future__ import annotations

import numpy as np

#: colour of the dividing line (RGB)
LINE = (255, 255, 255)


def wipe(left: np.ndarray, right: np.ndarray, split: float, line: int = 2) -> np.ndarray:
    """(H, W, 3) uint8 RGB: ``left`` for columns left of ``split`` x W, ``right`` from there on, with a
    ``line``-pixel divider. ``split`` in [0, 1] (clamped). Inputs are not modified; a ValueError names the
    shapes when they differ."""
    if left.shape != right.shape or left.ndim != 3 or left.shape[2] != 3:
        raise ValueError(f"wipe: expected two (H, W, 3) frames of one size, got {left.shape} and {right.shape}")
    w = left.shape[1]
    x = round(min(max(float(split), 0.0), 1.0) * w)
    out = right.copy()
    out[:, :x] = left[:, :x]
    if line > 0 and 0 < x < w:
        out[:, max(0, x - line // 2):min(w, x - line // 2 + line)] = LINE
    return out
