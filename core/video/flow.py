"""Dense optical flow between input frames, warping along it, and where it can be trusted.

One module for the three places that need motion: the warping-error metric (Lai et al. 2018), the
flow-compensated temporal stabiliser and shot analysis (motion, zoom). Flow is always computed on the
*input* frames (the stylised output has invented texture that would mislead it), with OpenCV's DIS
(Dense Inverse Search), on grey frames.

Conventions: a flow is (H, W, 2) float32, ``flow[y, x] = (dx, dy)`` in pixels, and ``flow_a_to_b`` maps
a pixel of frame a to where it is in frame b. ``backward_warp(img_b, flow_a_to_b)`` therefore pulls
frame b's content into a's pixel grid (``out[y, x] = img_b[y + dy, x + dx]``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from .frames import gray

PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
           "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


class FlowEstimator:
    """DIS flow on grey uint8 frames; one instance per thread (OpenCV's object is stateful)."""

    def __init__(self, preset: str = "fast") -> None:
        if preset not in PRESETS:
            raise ValueError(f"flow preset: expected one of {sorted(PRESETS)}, got {preset!r}")
        self._dis = cv2.DISOpticalFlow.create(PRESETS[preset])

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow from frame ``a`` to frame ``b``: (H, W, 3) uint8 RGB or (H, W) uint8 grey -> (H, W, 2) float32."""
        ga = a if a.ndim == 2 else gray(a)
        gb = b if b.ndim == 2 else gray(b)
        if ga.shape != gb.shape:
            raise ValueError(f"flow: frames differ in size, {ga.shape} vs {gb.shape}")
        h, w = ga.shape
        ph, pw = dis_shape(h, w)
        if (ph, pw) == (h, w):
            return self._dis.calc(ga, gb, None)
        pad = (0, ph - h, 0, pw - w, cv2.BORDER_REPLICATE)  # a frame too small or thin for DIS: padded, cropped
        return np.ascontiguousarray(self._dis.calc(cv2.copyMakeBorder(ga, *pad), cv2.copyMakeBorder(gb, *pad),
                                                   None)[:h, :w])


def dis_shape(h: int, w: int) -> tuple[int, int]:
    """The least (h, w) at or above a frame's that OpenCV's DIS takes: 16 px a side, 32 on the shorter from 80
    on the longer (measured on OpenCV 5.0 for every size up to 320 px and 640/1280, all presets). Thinner, it
    raises or segfaults (a 128x24 frame crashes the process); sizes it takes are passed as they are."""
    h2, w2 = max(h, 16), max(w, 16)
    need = 32 if max(h2, w2) >= 80 else 16
    return (max(h2, need), w2) if h2 <= w2 else (h2, max(w2, need))


def backward_warp(img: np.ndarray, flow: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """``out[y, x] = img[y + flow[y, x, 1], x + flow[y, x, 0]]`` (bilinear); same dtype and shape as ``img``."""
    gx, gy = pixel_grid(*flow.shape[:2])
    return cv2.remap(img, cv2.add(gx, flow[..., 0]), cv2.add(gy, flow[..., 1]), cv2.INTER_LINEAR, borderMode=border)


@functools.lru_cache(maxsize=8)
def pixel_map(h: int, w: int) -> np.ndarray:
    """Each pixel's (x, y), (H, W, 2) float32, made once per size (read-only: threads share it): a relative
    flow plus this is an absolute map for ``cv2.remap``."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.dstack([gx, gy])
    grid.flags.writeable = False
    return grid


@functools.lru_cache(maxsize=8)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pixel_map`'s x and y as separate (H, W) float32 planes (read-only: threads share them)."""
    gx, gy = cv2.split(pixel_map(h, w))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def _norm2(v: np.ndarray) -> np.ndarray:
    """``(v ** 2).sum(axis=2)`` of a (H, W, 2) float32 field, the same numbers, without NumPy's slow reduction
    over a 2-long axis (a third of the flow's cost here)."""
    x, y = v[..., 0], v[..., 1]
    return cv2.add(cv2.multiply(x, x), cv2.multiply(y, y))


def consistency_mask(fwd: np.ndarray, bwd: np.ndarray, alpha: float = 0.01, beta: float = 0.5) -> np.ndarray:
    """(H, W) bool: True where the flow a->b is reliable (forward-backward consistent, inside the frame).

    ``fwd`` is a->b, ``bwd`` is b->a. A pixel fails when following fwd then bwd does not return near the
    start (occluded or revealed region, or a flow error): ``|fwd + bwd(warped)|^2 > alpha (|fwd|^2 +
    |bwd(warped)|^2) + beta`` (Sundaram et al. 2010, as used by Ruder et al. and Lai et al.), or when
    fwd points outside frame b.
    """
    h, w = fwd.shape[:2]
    bwd_at = backward_warp(bwd, fwd)
    lhs = _norm2(cv2.add(fwd, bwd_at))
    rhs = alpha * (_norm2(fwd) + _norm2(bwd_at)) + beta
    gx, gy = pixel_grid(h, w)
    tx, ty = cv2.add(gx, fwd[..., 0]), cv2.add(gy, fwd[..., 1])
    inside = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    return (lhs <= rhs) & inside


@dataclass(frozen=True)
class FlowPair:
    """Flow from frame t to t-1 (to pull t-1's content onto t), and where it is reliable."""

    to_prev: np.ndarray  # (H, W, 2) float32
    reliable: np.ndarray  # (H, W) bool


def flow_to_previous(est: FlowEstimator, prev: np.ndarray, cur: np.ndarray) -> FlowPair:
    """Flow cur -> prev with its forward-backward mask: ``backward_warp(x_prev, p.to_prev)`` aligns frame
    t-1 (input or output) to frame t; ``p.reliable`` says where that alignment can be trusted."""
    to_prev = est(cur, prev)
    to_cur = est(prev, cur)
    return FlowPair(to_prev, consistency_mask(to_prev, to_cur))


def divergence(flow: np.ndarray) -> float:
    """Mean divergence of a flow field (per pixel): > 0 zooming in / moving closer, < 0 zooming out."""
    du = np.gradient(flow[..., 0], axis=1)
    dv = np.gradient(flow[..., 1], axis=0)
    return float((du + dv).mean())
