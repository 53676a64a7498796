"""Pencil sketch: the classic gray -> invert -> blur -> colour-dodge, drawn on procedural paper.

The strokes come back as ``lines`` (graphite darkness) apart from the paper ``base`` so the temporal
stage can steady the strokes without smearing the paper grain, which is static anyway: it is generated
once per frame size from ``seed`` and never changes between frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.errors import ConfigError
from core.video.frames import gray, gray_to_rgb, to_float, to_uint8

from .base import Styled, Stylizer
from .signature import Floor, ink_coverage


@dataclass(frozen=True)
class PencilParams:
    """Settings of the pencil style (sizes in pixels of the frame being stylized)."""

    blur_sigma: float = field(
        default=6.0,
        metadata={"min": 0.5, "max": 50.0, "help": "blur of the inverted gray: larger gives broader, softer strokes"},
    )
    darkness: float = field(
        default=1.6,
        metadata={"min": 0.1, "max": 8.0, "help": "gain on stroke darkness; 1 is the plain colour-dodge sketch"},
    )
    paper_texture: float = field(
        default=0.35,
        metadata={"min": 0.0, "max": 1.0, "help": "strength of the paper grain; 0 gives plain white paper"},
    )
    tint: float = field(
        default=0.0,
        metadata={"min": 0.0, "max": 1.0, "help": "strength of a soft wash of the source colours under the strokes"},
    )
    ink: tuple[int, ...] = field(default=(40, 40, 48), metadata={"help": "pencil colour as r,g,b integers in 0..255"})
    seed: int = field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": "seed of the paper texture"})

    def __post_init__(self) -> None:
        if len(self.ink) != 3 or any(not 0 <= v <= 255 for v in self.ink):
            raise ConfigError(f"pencil ink: expected 3 integers in 0..255 (r,g,b), got {self.ink!r}")


def paper_grain(height: int, width: int, seed: int) -> np.ndarray:
    """Procedural paper tooth: (H, W) float32, zero mean, unit standard deviation, deterministic in seed.

    Fine isotropic grain, horizontal fibres and soft blotches, each from its own seeded noise field.
    """
    rng = np.random.default_rng(seed)
    fine = cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 0.7)
    fibres = cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 5.0, sigmaY=0.6)
    coarse = rng.standard_normal((max(2, height // 48), max(2, width // 48)), dtype=np.float32)
    blotches = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    parts = [p / max(float(p.std()), 1e-6) for p in (fine, fibres, blotches)]
    grain = 0.55 * parts[0] + 0.3 * parts[1] + 0.15 * parts[2]
    return (grain - grain.mean()) / max(float(grain.std()), 1e-6)


def paper_tone(grain: np.ndarray, amount: float) -> np.ndarray:
    """Paper brightness (H, W) float32 in [0, 1]: white at ``amount`` 0, greyer in the pits as it grows."""
    return np.clip(1.0 - amount * (0.05 + 0.035 * grain), 0.0, 1.0).astype(np.float32)


def dodge_darkness(rgb: np.ndarray, blur_sigma: float) -> np.ndarray:
    """Colour-dodge sketch of (H, W, 3) uint8 RGB -> (H, W) float32 graphite darkness in [0, 1].

    dodge = gray * 256 / (255 - blur(255 - gray)): flat areas divide to white, edges stay dark.
    """
    g = gray(rgb)
    dodge = cv2.divide(g, cv2.bitwise_not(wide_blur(cv2.bitwise_not(g), blur_sigma)), scale=256.0)
    return to_float(cv2.bitwise_not(dodge))


def wide_blur(grey: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of (H, W) uint8, computed at half size (area down, sigma / 2, bilinear up) from
    :data:`HALF_SIZE_SIGMA` up: a blur that wide has nothing at the half-size copy's Nyquist to lose, and
    its 37 taps (the default sigma 6) were most of the pencil's time (3.7 of 5 ms a 720p frame; 0.8 ms so).
    Within a few code values of the full-size blur (``tests/stylizers/test_stylizers.py``)."""
    h, w = grey.shape
    if sigma < HALF_SIZE_SIGMA or min(h, w) < 16:
        return cv2.GaussianBlur(grey, (0, 0), sigma)
    # the border is mirrored at full size, as GaussianBlur's own (a mirror of the half-size copy reflects
    # about a point half a pixel off, and a bright edge at the border came out 10 codes apart); an even
    # margin and an even size keep the halves on the frame's pixel grid
    m = 2 * math.ceil(1.5 * sigma)
    padded = cv2.copyMakeBorder(grey, m, m + h % 2, m, m + w % 2, cv2.BORDER_REFLECT_101)
    ph, pw = padded.shape
    small = cv2.resize(padded, (pw // 2, ph // 2), interpolation=cv2.INTER_AREA)
    up = cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / 2), (pw, ph), interpolation=cv2.INTER_LINEAR)
    return up[m:m + h, m:m + w]


#: from this sigma on, :func:`wide_blur` blurs a half-size copy
HALF_SIZE_SIGMA = 3.0


def colour_wash(rgb: np.ndarray, amount: float) -> np.ndarray:
    """A soft wash of the source colours to lay under the strokes: (H, W, 3) float32 in [0, 1].

    Taken from a 1/8-size copy so it carries colour but no detail (the strokes carry the detail), and
    faded towards white by ``1 - amount``.
    """
    height, width = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, width // 8), max(1, height // 8)), interpolation=cv2.INTER_AREA)
    soft = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return (1.0 - amount) + np.float32(amount) * to_float(soft)


class Pencil(Stylizer):
    name = "pencil"
    description = "Pencil sketch: colour-dodge strokes over seeded paper grain, optionally tinted."
    Params = PencilParams
    #: its graphite strokes, and no blur: fainter strokes flicker less, down to blank paper
    floors = (Floor("stroke_density", 0.8), Floor("sharpness", 0.8))

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """``stroke_density``: the mean graphite darkness over the frame (:func:`.signature.ink_coverage`)."""
        return {"stroke_density": ink_coverage(styled.lines)}

    def __init__(self, params: PencilParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        self._grain_size: tuple[int, int] | None = None
        self._tooth: np.ndarray | None = None
        self._paper: np.ndarray | None = None
        self._blank: np.ndarray | None = None

    def _paper_for(self, height: int, width: int) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """(tooth, tone, blank) for this frame size, made once and reused, since the paper does not move:
        the share of graphite each spot of paper catches (None without texture), the paper's brightness, and
        the untinted base (uint8 RGB, read-only). Per frame they cost ~1.5 ms at 720p."""
        if self._grain_size != (height, width):
            p = self.params
            grain = paper_grain(height, width, p.seed)
            self._tooth = (1.0 - np.float32(0.25 * p.paper_texture) * np.clip(grain, 0.0, 2.0)
                           if p.paper_texture > 0 else None)
            self._paper = paper_tone(grain, p.paper_texture)
            self._blank = gray_to_rgb(to_uint8(self._paper))
            self._blank.flags.writeable = False
            self._grain_size = (height, width)
        return self._tooth, self._paper, self._blank

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        """(H, W, 3) uint8 RGB -> paper base (uint8 RGB) + graphite ``lines`` (float32 [0, 1]) in ``ink``."""
        p = self.params
        height, width = rgb.shape[:2]
        tooth, tone, blank = self._paper_for(height, width)
        lines = dodge_darkness(rgb, p.blur_sigma) * np.float32(p.darkness)
        if tooth is not None:  # graphite catches on the ridges of the paper and skips the pits
            lines *= tooth
        np.clip(lines, 0.0, 1.0, out=lines)
        base = blank if p.tint == 0 else to_uint8(tone[..., None] * colour_wash(rgb, p.tint))
        return Styled(base=base, lines=lines, ink=(p.ink[0], p.ink[1], p.ink[2]))
