"""Comic: CMYK halftone dots at the classic screen angles on white paper, with bold ink outlines.

Each ink gets its own dot screen (C 15, M 75, Y 0, K 45 degrees, so the screens do not beat into a
moire). A dot's radius is chosen so the inked area of its cell equals the ink coverage around it,
which keeps the average colour of the print equal to the source. The screens depend only on frame size
and cell size, so they are built once and cached; per frame only the coverage-dependent part runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.errors import ConfigError
from core.video.frames import to_float, to_uint8

from .base import Styled, Stylizer
from .outlines import ink_outlines
from .signature import Floor, ink_coverage

#: screen angles in degrees, in C, M, Y, K order
SCREEN_ANGLES = (15.0, 75.0, 0.0, 45.0)


@dataclass(frozen=True)
class ComicParams:
    """Settings of the comic style (sizes in pixels of the frame being stylized)."""

    cell_size: int = field(default=7, metadata={"min": 3, "max": 64, "help": "halftone dot pitch in pixels"})
    black_generation: float = field(
        default=0.6,
        metadata={"min": 0.0, "max": 1.0, "help": "share of the grey component printed in black instead of C+M+Y"},
    )
    edge_low: int = field(default=60, metadata={"min": 0, "max": 1000, "help": "Canny lower threshold"})
    edge_high: int = field(default=150, metadata={"min": 1, "max": 1000, "help": "Canny upper threshold"})
    line_width: int = field(default=2, metadata={"min": 0, "max": 9, "help": "outline width in pixels; 0 = none"})

    def __post_init__(self) -> None:
        if self.edge_low > self.edge_high:
            raise ConfigError(f"comic: edge_low ({self.edge_low}) must not exceed edge_high ({self.edge_high})")


def screen_distances(height: int, width: int, cell: int, angle: float) -> np.ndarray:
    """(H, W) float32: pixel distance from each pixel centre to the nearest dot of a rotated screen.

    The screen is a square lattice of pitch ``cell`` pixels turned by ``angle`` degrees.
    """
    t = np.deg2rad(angle)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) + np.float32(0.5)
    u = (x * np.float32(np.cos(t)) + y * np.float32(np.sin(t))) / np.float32(cell)
    v = (y * np.float32(np.cos(t)) - x * np.float32(np.sin(t))) / np.float32(cell)
    u -= np.floor(u) + np.float32(0.5)
    v -= np.floor(v) + np.float32(0.5)
    return np.sqrt(u * u + v * v) * np.float32(cell)


def radius_table(cell: int) -> np.ndarray:
    """(256,) float32: for coverage code c (0..255 = 0..100 %), the dot radius in pixels plus 0.5.

    Ink at distance d from a dot centre is ``smoothstep(table[c] - d)``, a 1 px antialiased edge. The
    radius is solved numerically so that this soft disc, clipped to its square cell, covers exactly the
    fraction c of the cell: 0 % prints nothing, 100 % is solid, corners included, and small dots are not
    eaten by the antialiasing.
    """
    grid = (np.arange(32) + 0.5) / 64  # sample points over a quarter cell (the disc is symmetric), cell units
    d = np.hypot(*np.meshgrid(grid, grid)).ravel() * cell
    radii = np.linspace(-0.5, cell * np.sqrt(0.5) + 0.5, 768)
    area = smoothstep(radii[:, None] + 0.5 - d[None, :]).mean(axis=1)
    # np.interp needs increasing x: keep the first radius reaching each area
    area, first = np.unique(area, return_index=True)
    c = np.arange(256) / 255.0
    return (np.interp(c, area, radii[first]) + 0.5).astype(np.float32)


def cmyk_coverage(rgb: np.ndarray, black_generation: float) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (4, H, W) uint8 planes of C, M, Y, K ink coverage (0..255 = 0..100 %).

    Printing C' over K reproduces 1 - C when C' = (C - K) / (1 - K), so the halftone averages back to
    the source colour whatever share of grey goes to black. Planar because NumPy broadcasts the K plane
    over leading axes an order of magnitude faster than over a trailing channel axis.
    """
    cmy = 1.0 - to_float(np.stack(cv2.split(rgb)))
    k = np.float32(black_generation) * cmy.min(axis=0)
    cmy -= k
    cmy /= np.maximum(1.0 - k, np.float32(1e-6))
    return to_uint8(np.concatenate([cmy, k[None]]))


def local_coverage(rgb: np.ndarray, cell: int, black_generation: float) -> np.ndarray:
    """Ink coverage averaged over about one cell: (H, W, 3) uint8 RGB -> (4, H, W) uint8 C, M, Y, K planes.

    Each dot samples this, so it may as well be computed at 1/(cell/2) size and scaled back up (area down,
    bilinear up: about a one-cell box), which makes the colour maths ~10x cheaper.
    """
    height, width = rgb.shape[:2]
    f = max(1, cell // 2)
    small = cv2.resize(rgb, (max(1, width // f), max(1, height // f)), interpolation=cv2.INTER_AREA)
    planes = cmyk_coverage(small, black_generation)
    return np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in planes])


#: rows of the frame the halftone composes at a time: its four float planes then stay in a core's cache
#: (4 x 32 x 1280 x 4 B = 640 KiB at 720p) instead of streaming ~100 MB a frame through memory, which two
#: frames styled at once on two cores had shared.
BAND_ROWS = 32


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Hermite ramp 3t^2 - 2t^3 of ``t`` clipped to [0, 1]; computed in place on ``t`` (a caller's temporary)."""
    np.clip(t, 0.0, 1.0, out=t)
    sq = t * t
    t *= np.float32(-2.0)
    t += np.float32(3.0)
    t *= sq
    return t


class Comic(Stylizer):
    name = "comic"
    description = "Comic print: CMYK halftone dots at classic screen angles on white paper, bold outlines."
    Params = ComicParams
    #: its ink outlines, and its crisp dots: the cheapest ways to flicker less drop the outlines or coarsen the
    #: screen. The sharpness floor is looser than other styles' because the dots set it: a 13 px screen
    #: (default 7) halves it and is still a comic print, a 48 px one is a tenth of it and is not.
    floors = (Floor("outline_density", 0.8), Floor("sharpness", 0.5))

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """``outline_density``: the share of the frame under ink outlines (:func:`.signature.ink_coverage`)."""
        return {"outline_density": ink_coverage(styled.lines)}

    def __init__(self, params: ComicParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        self._radius = radius_table(self.params.cell_size)
        self._screens_size: tuple[int, int] | None = None
        self._screens: np.ndarray | None = None

    def _screens_for(self, height: int, width: int) -> np.ndarray:
        """(4, H, W) float32 dot-centre distances of the C, M, Y, K screens, built once per frame size."""
        if self._screens_size != (height, width):
            cell = self.params.cell_size
            self._screens = np.stack([screen_distances(height, width, cell, a) for a in SCREEN_ANGLES])
            self._screens_size = (height, width)
        return self._screens

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        """(H, W, 3) uint8 RGB -> halftone print base (uint8 RGB) + black outline ``lines`` (float32 [0, 1])."""
        p = self.params
        height, width = rgb.shape[:2]
        coverage = local_coverage(rgb, p.cell_size, p.black_generation)
        screens = self._screens_for(height, width)
        base = np.empty((height, width, 3), np.uint8)
        for y0 in range(0, height, BAND_ROWS):  # per pixel from here on: a band at a time stays in cache
            y1 = min(height, y0 + BAND_ROWS)
            band = np.ascontiguousarray(coverage[:, y0:y1]).reshape(4 * (y1 - y0), width)
            radius = cv2.LUT(band, self._radius).reshape(4, y1 - y0, width)
            ink = smoothstep(radius - screens[:, y0:y1])
            # subtractive print on white paper: C absorbs red, M green, Y blue, K everything
            paper = 1.0 - ink
            printed = paper[:3]
            printed *= paper[3]
            # to uint8 as :func:`to_uint8` rounds, in place: paper is within [0, 1], so its clip is a no-op
            printed *= np.float32(255.0)
            printed += np.float32(0.5)
            base[y0:y1] = cv2.merge(list(printed.astype(np.uint8)))
        lines = ink_outlines(rgb, p.edge_low, p.edge_high, p.line_width)
        return Styled(base=base, lines=lines)
