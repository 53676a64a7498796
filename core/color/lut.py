"""The parsed form of a colour LUT file: a frozen :class:`Lut` made of an optional 1D and an optional 3D part.

Readers (one per file format, see :mod:`core.color.cube`) build these; :mod:`core.color.ocio` turns them into
OpenColorIO processors and :mod:`core.color.bake` into 8-bit tables. Tables are read-only float32 arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import LutError

Triple = tuple[float, float, float]

UNIT_MIN: Triple = (0.0, 0.0, 0.0)
UNIT_MAX: Triple = (1.0, 1.0, 1.0)

#: Sizes a reader accepts (entries per channel); beyond these a file is damaged or absurd.
SIZE_1D = (2, 65536)
SIZE_3D = (2, 256)

KINDS = ("1D", "3D", "1D+3D")


@dataclass(frozen=True, eq=False)
class _Table:
    """What a 1D and a 3D table share: a size, a per-channel input domain and the float32 values."""

    size: int
    domain_min: Triple
    domain_max: Triple
    table: np.ndarray

    @property
    def is_unit_domain(self) -> bool:
        return self.domain_min == UNIT_MIN and self.domain_max == UNIT_MAX


@dataclass(frozen=True, eq=False)
class Lut1D(_Table):
    """A per-channel curve: ``table`` (size, 3) float32, entry i is the output for input
    ``domain_min + i / (size - 1) * (domain_max - domain_min)`` (per channel). Inputs outside the domain clamp
    to its ends, as in OpenColorIO."""


@dataclass(frozen=True, eq=False)
class Lut3D(_Table):
    """A lattice: ``table`` (size, size, size, 3) float32 indexed ``[r][g][b]`` (blue changes fastest in memory,
    unlike the red-fastest order of ``.cube`` data). Inputs outside the domain clamp to the cube's faces."""


@dataclass(frozen=True, eq=False)
class Lut:
    """One LUT file: ``lut1d`` (a shaper or the whole LUT) is applied first, then ``lut3d``.

    ``kind`` is "1D", "3D" or "1D+3D"; ``sha256`` is the hex digest of the file's bytes, the identity used by
    every cache; ``notes`` lists keywords that were legal but had no effect (e.g. a 1D input range in a
    3D-only file, which OpenColorIO ignores too). Equality and hashing are by identity.
    """

    path: Path
    title: str
    kind: str
    lut1d: Lut1D | None
    lut3d: Lut3D | None
    sha256: str
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        expected = "1D+3D" if self.lut1d and self.lut3d else "1D" if self.lut1d else "3D" if self.lut3d else None
        if self.kind != expected:
            raise LutError(f"{self.path}: kind {self.kind!r} does not match its parts (expected {expected!r})")

    @property
    def domain_min(self) -> Triple:
        """The input domain's lower end: that of the first stage."""
        return (self.lut1d or self.lut3d).domain_min  # type: ignore[union-attr]

    @property
    def domain_max(self) -> Triple:
        """The input domain's upper end: that of the first stage."""
        return (self.lut1d or self.lut3d).domain_max  # type: ignore[union-attr]

    @property
    def name(self) -> str:
        """The title, or the file name when the file has none."""
        return self.title or self.path.name


def frozen_table(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous, read-only float32 copy of ``values`` reshaped to ``shape``."""
    table = np.array(values, dtype=np.float32, order="C").reshape(shape)
    table.setflags(write=False)
    return table
