"""Cartoon: edge-preserving smoothing, a flat palette fitted once per job, and inked outlines.

The palette is fitted by :meth:`Cartoon.analyze` over frames sampled from the whole clip, so every
frame (and every chunk, in any process) paints with the same colours: a palette fitted per frame would
make flat areas flicker between shades. Applying it is one lookup into a 32^3 table built in
``__init__``, not a nearest-colour search per pixel.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.errors import ConfigError
from core.video.frames import to_float, to_uint8

from .base import Styled, Stylizer
from .outlines import ink_outlines
from .signature import Floor, ink_coverage

#: bits kept per channel when indexing the palette table (32^3 cells, 96 KiB): what packed RGB555 keeps
_LUT_BITS = 5
#: pixels given to k-means in all; more buys nothing visible and costs time
_FIT_PIXELS = 24_000
#: bilateral neighbourhood at the working scale, and its spatial sigma
_BILATERAL_D = 5
_BILATERAL_SIGMA_SPACE = 5.0


@dataclass(frozen=True)
class CartoonParams:
    """Settings of the cartoon style (sizes in pixels of the frame being stylized)."""

    n_colors: int = field(default=8, metadata={"min": 2, "max": 32, "help": "number of palette colours"})
    smooth_iterations: int = field(
        default=4, metadata={"min": 0, "max": 12, "help": "bilateral passes; more gives flatter, more painted areas"}
    )
    smooth_color: float = field(
        default=40.0,
        metadata={
            "min": 1.0,
            "max": 200.0,
            "help": "bilateral colour sigma (0..255 scale): how different colours may merge",
        },
    )
    smooth_scale: int = field(
        default=2, metadata={"choices": (1, 2, 4), "help": "smooth at 1/scale resolution: 2 is fast and looks the same"}
    )
    edge_low: int = field(default=50, metadata={"min": 0, "max": 1000, "help": "Canny lower threshold"})
    edge_high: int = field(default=130, metadata={"min": 1, "max": 1000, "help": "Canny upper threshold"})
    line_width: int = field(default=2, metadata={"min": 0, "max": 9, "help": "outline width in pixels; 0 = none"})
    seed: int = field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": "seed of the k-means fit"})

    def __post_init__(self) -> None:
        if self.edge_low > self.edge_high:
            raise ConfigError(f"cartoon: edge_low ({self.edge_low}) must not exceed edge_high ({self.edge_high})")


def smooth(rgb: np.ndarray, params: CartoonParams) -> np.ndarray:
    """Iterated bilateral filter at 1/``smooth_scale`` size: (H, W, 3) uint8 -> (h, w, 3) uint8, reduced size."""
    height, width = rgb.shape[:2]
    s = params.smooth_scale
    out = rgb
    if s > 1:
        out = cv2.resize(rgb, (max(1, width // s), max(1, height // s)), interpolation=cv2.INTER_AREA)
    for _ in range(params.smooth_iterations):
        out = cv2.bilateralFilter(out, _BILATERAL_D, params.smooth_color, _BILATERAL_SIGMA_SPACE)
    return out


_lab_lock = threading.Lock()
_lab_ready = False


def warm() -> None:
    """Have OpenCV build its CIELAB tables now. Its first Lab conversion in a process builds every colour
    table it has (0.09 s here, in software floating point), and the palette fit is the first: a render worker
    calls this on its warming thread while the job's analysis decodes its sample frames (``Cartoon.warm_modules``),
    and the fit finds them built. Serialised with the fit's own first conversion, because OpenCV's set-up is
    not thread-safe (a plain flag, set when done)."""
    global _lab_ready
    with _lab_lock:
        if not _lab_ready:
            cv2.cvtColor(np.zeros((1, 1, 3), np.float32), cv2.COLOR_RGB2Lab)
            _lab_ready = True


def _rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N, 3) float32 CIELAB; palette distances are measured there (perceptual)."""
    warm()
    return cv2.cvtColor(to_float(rgb)[None], cv2.COLOR_RGB2Lab)[0]


def fit_palette(samples: Sequence[np.ndarray], params: CartoonParams) -> list[list[int]]:
    """k-means palette of smoothed sample frames: sorted, deduplicated ``[[r, g, b], ...]`` ints.

    Deterministic: pixels are drawn with a generator seeded from ``params.seed`` and k-means++ seeds from
    OpenCV's RNG, reset to the same seed first.
    """
    rng = np.random.default_rng(params.seed)
    per_frame = max(1, _FIT_PIXELS // max(1, len(samples)))
    picked = []
    for frame in samples:
        pixels = smooth(frame, params).reshape(-1, 3)
        if len(pixels) > per_frame:
            pixels = pixels[np.sort(rng.choice(len(pixels), per_frame, replace=False))]
        picked.append(pixels)
    data = _rgb_to_lab(np.concatenate(picked))
    if len(data) <= params.n_colors:  # tiny frames: every pixel is a palette colour
        centers = data
    else:
        cv2.setRNGSeed(params.seed)
        criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1)
        _, _, centers = cv2.kmeans(data, params.n_colors, None, criteria, 3, cv2.KMEANS_PP_CENTERS)
    rgb = to_uint8(cv2.cvtColor(centers.astype(np.float32)[None], cv2.COLOR_Lab2RGB)[0])
    return sorted({tuple(int(v) for v in c) for c in rgb}, key=lambda c: (sum(c), c))  # type: ignore[return-value]


def palette_table(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(32^3, 3) uint8: for each cell of 5-bit-quantised RGB, the palette colour nearest (in Lab) its centre."""
    levels = (np.arange(1 << _LUT_BITS, dtype=np.uint8) << (8 - _LUT_BITS)) + (1 << (7 - _LUT_BITS))
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    centres = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)
    pal = np.asarray(palette, dtype=np.uint8)
    dist = ((_rgb_to_lab(centres)[:, None, :] - _rgb_to_lab(pal)[None, :, :]) ** 2).sum(axis=2)
    return np.ascontiguousarray(pal[np.argmin(dist, axis=1)])


def apply_palette(rgb: np.ndarray, table: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8, every pixel replaced by its palette colour via ``table``.

    The cell index, the top 5 bits of R, G and B as one 15-bit number, is what OpenCV's conversion to packed
    RGB555 computes (``COLOR_RGB2BGR555`` puts the first channel in the high bits): one vector pass, 0.2 ms
    a 720p frame, where NumPy's shifts and ors took 1.9 ms. The table is looked up as one uint32 per cell:
    the same bytes as indexing (N, 3) rows with intp indices, at a third of the cost."""
    idx = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR555).view(np.uint16)[..., 0]
    packed = np.zeros((len(table), 4), np.uint8)
    packed[:, :3] = table
    rgba = np.take(packed.view(np.uint32).ravel(), idx).view(np.uint8).reshape(*rgb.shape[:2], 4)
    return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)


def _check_palette(palette: Any) -> list[list[int]]:
    """The shared palette, validated: it comes from a job's saved analysis, so a bad one is a config error."""
    ok = (
        isinstance(palette, (list, tuple))
        and len(palette) > 0
        and all(
            isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
            for c in palette
        )
    )
    if not ok:
        raise ConfigError(f"cartoon: shared palette must be a non-empty list of [r, g, b] ints, got {palette!r}")
    return [list(c) for c in palette]


class Cartoon(Stylizer):
    """Flat-shaded cartoon. Give it ``shared`` from :meth:`analyze` for one palette over the whole clip;
    without it every frame fits its own palette (deterministic, but the shades may flicker)."""

    name = "cartoon"
    description = "Cartoon: bilateral smoothing, a flat palette fitted once per clip, and ink outlines."
    Params = CartoonParams
    analysis_samples = 8
    warm_modules = ("stylizers.cartoon",)  # OpenCV's Lab tables (:func:`warm`)
    #: its ink outlines, and no blur: dropping or smearing them is the cheapest way to flicker less (a best
    #: pick without outlines once had sharpness 178 against the defaults' 1785)
    floors = (Floor("outline_density", 0.8), Floor("sharpness", 0.8))

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """``outline_density``: the share of the frame under ink outlines (:func:`.signature.ink_coverage`)."""
        return {"outline_density": ink_coverage(styled.lines)}

    def __init__(self, params: CartoonParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        palette = self.shared.get("palette")
        self._table = palette_table(_check_palette(palette)) if palette is not None else None

    @classmethod
    def analyze(cls, params: CartoonParams, samples: list[np.ndarray]) -> dict[str, Any]:
        """``{"palette": [[r, g, b], ...]}`` fitted over all sampled frames; ``{}`` when there are none."""
        if not samples:
            return {}
        return {"palette": [list(c) for c in fit_palette(samples, params)]}

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        """(H, W, 3) uint8 RGB -> palette-flat base (uint8 RGB) + black outline ``lines`` (float32 [0, 1])."""
        p = self.params
        height, width = rgb.shape[:2]
        table = self._table if self._table is not None else palette_table(fit_palette([rgb], p))
        flat = smooth(rgb, p)
        if flat.shape[:2] != (height, width):
            flat = cv2.resize(flat, (width, height), interpolation=cv2.INTER_LINEAR)
        lines = ink_outlines(flat, p.edge_low, p.edge_high, p.line_width, median=True, soften=True)
        return Styled(base=apply_palette(flat, table), lines=lines)
