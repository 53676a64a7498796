"""Procedural teachers: looks that no classical style makes, defined here only to be distilled into a network.

A bundled neural style earns its place by doing what the classical styles cannot; its teacher is written
out in full so anyone can rebuild the model (``scripts/train_starter_models.py``) and see what it learnt.
Each teacher is a pure function of the pixels and their neighbourhood in pixels (no frame-relative sizes,
no seeded texture): the only kind of function a fully convolutional network can learn.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def kuwahara(rgb: np.ndarray, radius: int = 3) -> np.ndarray:
    """Kuwahara's filter: each pixel takes the mean colour of the least varied of the four windows that meet
    at it, so flat areas become brush patches while edges stay put. (H, W, 3) uint8 -> float32 in [0, 1]."""
    img = rgb.astype(np.float32) / 255.0
    lum = img @ LUMA
    size = (radius + 1, radius + 1)
    mean = cv2.blur(img, size, borderType=cv2.BORDER_REFLECT)
    m = cv2.blur(lum, size, borderType=cv2.BORDER_REFLECT)
    var = cv2.blur(lum * lum, size, borderType=cv2.BORDER_REFLECT) - m * m
    h = radius // 2
    height, width = lum.shape
    pad_mean = cv2.copyMakeBorder(mean, h, h, h, h, cv2.BORDER_REFLECT)
    pad_var = cv2.copyMakeBorder(var, h, h, h, h, cv2.BORDER_REFLECT)
    corners = [(dy, dx) for dy in (0, 2 * h) for dx in (0, 2 * h)]
    variances = np.stack([pad_var[dy:dy + height, dx:dx + width] for dy, dx in corners])
    means = np.stack([pad_mean[dy:dy + height, dx:dx + width] for dy, dx in corners])
    pick = variances.argmin(0)[None, ..., None]
    return np.take_along_axis(means, np.repeat(pick, 3, axis=-1), 0)[0]


def oil(rgb: np.ndarray, radius: int = 3, saturation: float = 1.25) -> np.ndarray:
    """A painterly oil look: Kuwahara brush patches in richer colour. (H, W, 3) uint8 -> uint8."""
    hsv = cv2.cvtColor(kuwahara(rgb, radius), cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * np.float32(saturation), 0.0, 1.0)
    out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


TEACHERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"oil": oil}
