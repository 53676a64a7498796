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


def area_down(img: np.ndarray, f: int) -> np.ndarray:
    """OpenCV's area resize of ``img`` (uint8, each side a multiple of ``f``) to 1/``f`` size, the same bytes.

    For an odd ``f`` it is a box blur sampled at each block's centre: a block's mean then never lies half-way
    between two codes (the block has an odd number of pixels), so both round it to the same code, and OpenCV's
    box filter is vectorised where its area resize by 3 is not (1.0 against 2.9 ms for 1281x720 -> 427x240)."""
    h, w = img.shape[:2]
    if f % 2 == 0 or f == 1:
        return cv2.resize(img, (w // f, h // f), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(cv2.blur(img, (f, f))[f // 2::f, f // 2::f])


def local_coverage(rgb: np.ndarray, cell: int, black_generation: float) -> np.ndarray:
    """Ink coverage averaged over about one cell: (H, W, 3) uint8 RGB -> (H, W, 4) uint8 C, M, Y, K.

    Each dot samples this, so it is computed at 1/f size (f = cell // 2) and scaled back up (area down,
    bilinear up: about a one-cell box), which makes the colour maths ~10x cheaper. The frame is padded (edge
    pixels repeated) to a multiple of f first: OpenCV's area resize by a whole factor is 3x faster than by a
    fractional one (1280 / 426), and the way back up is then the same whole factor.
    """
    height, width = rgb.shape[:2]
    f = max(1, cell // 2)
    if f == 1:
        return cv2.merge(list(cmyk_coverage(rgb, black_generation)))
    sh, sw = -(-height // f), -(-width // f)
    padded = rgb if (sh * f, sw * f) == (height, width) else cv2.copyMakeBorder(
        rgb, 0, sh * f - height, 0, sw * f - width, cv2.BORDER_REPLICATE)
    small = area_down(padded, f)
    coverage = cv2.merge(list(cmyk_coverage(small, black_generation)))
    return cv2.resize(coverage, (sw * f, sh * f), interpolation=cv2.INTER_LINEAR)[:height, :width]


#: sub-pixel steps of the halftone's fixed-point dot edges: a dot's radius and each pixel's distance to its
#: dot are whole 1/128ths of a pixel, so the print is integer arithmetic on uint16 (within 4 codes of the
#: float formula, ``tests/stylizers/test_comic.py``)
EDGE_STEPS = 128


def smoothstep(t: np.ndarray) -> np.ndarray:
    """Hermite ramp 3t^2 - 2t^3 of ``t`` clipped to [0, 1]; computed in place on ``t`` (a caller's temporary)."""
    np.clip(t, 0.0, 1.0, out=t)
    sq = t * t
    t *= np.float32(-2.0)
    t += np.float32(3.0)
    t *= sq
    return t


def paper_table() -> np.ndarray:
    """(256,) uint8: the paper left (255 = all) at a pixel ``t`` / :data:`EDGE_STEPS` px inside its dot's edge,
    for ``t`` in 0..255: the antialiased edge is :func:`smoothstep` over one pixel, solid ink beyond it."""
    t = np.minimum(np.arange(256, dtype=np.float32) / np.float32(EDGE_STEPS), np.float32(1.0))
    return to_uint8(1.0 - smoothstep(t))


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
        self._radius = np.rint(radius_table(self.params.cell_size) * np.float32(EDGE_STEPS)).astype(np.uint16)
        self._paper = paper_table()
        self._screens_size: tuple[int, int] | None = None
        self._screens: np.ndarray | None = None

    def _screens_for(self, height: int, width: int) -> np.ndarray:
        """(H, W, 4) uint16 distances from each pixel to the nearest dot of the C, M, Y, K screens, in
        1/:data:`EDGE_STEPS` px: built once per frame size."""
        if self._screens_size != (height, width):
            cell = self.params.cell_size
            d = np.stack([screen_distances(height, width, cell, a) for a in SCREEN_ANGLES], axis=-1)
            self._screens = np.rint(d * np.float32(EDGE_STEPS)).astype(np.uint16)
            self._screens_size = (height, width)
        return self._screens

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        """(H, W, 3) uint8 RGB -> halftone print base (uint8 RGB) + black outline ``lines`` (float32 [0, 1]).

        Integer arithmetic throughout, OpenCV's saturation doing the clipping: the depth of each pixel inside
        its dot's edge is radius - distance, saturated at 0 (uint16) and at 255 (uint8), a table turns it into
        paper, and each of C, M, Y prints over K as paper x paper / 255."""
        p = self.params
        height, width = rgb.shape[:2]
        coverage = local_coverage(rgb, p.cell_size, p.black_generation)
        depth = cv2.convertScaleAbs(cv2.subtract(cv2.LUT(coverage, self._radius), self._screens_for(height, width)))
        paper = cv2.LUT(depth.reshape(height, width * 4), self._paper).reshape(height, width, 4)
        c, m, y, k = cv2.split(paper)
        # subtractive print on white paper: C absorbs red, M green, Y blue, K everything
        base = cv2.merge([cv2.multiply(ink, k, scale=1 / 255) for ink in (c, m, y)])
        lines = ink_outlines(rgb, p.edge_low, p.edge_high, p.line_width)
        return Styled(base=base, lines=lines)
