"""What ``lut check`` prints: a LUT's shape, domain and behaviour, measured through the float path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lut import Lut, Triple
from .ocio import apply_float

#: Probe points per channel across the input domain.
_GRID = 17
#: Below half an 8-bit code value a LUT changes nothing visible: call it identity-like.
IDENTITY_TOLERANCE = 0.5 / 255


@dataclass(frozen=True)
class LutSummary:
    """Output range (per channel, over a 17^3 grid of the input domain) and the largest deviation from f(x) = x."""

    lut: Lut
    out_min: Triple
    out_max: Triple
    max_deviation: float

    @property
    def identity_like(self) -> bool:
        return self.max_deviation < IDENTITY_TOLERANCE

    def lines(self) -> list[str]:
        lut = self.lut
        out = [f"file: {lut.path}", f"title: {lut.title or '(none)'}", f"kind: {lut.kind}"]
        for label, part in (("1D", lut.lut1d), ("3D", lut.lut3d)):
            if part is not None:
                out.append(f"{label}: size {part.size}, domain {_domain(part.domain_min, part.domain_max)}")
        out.append(f"output: min {_fmt(self.out_min)}, max {_fmt(self.out_max)}")
        verdict = "yes" if self.identity_like else "no"
        out.append(f"identity-like: {verdict} (max |f(x) - x| = {self.max_deviation:.3g} over the domain)")
        out.append(f"sha256: {lut.sha256}")
        out.extend(f"note: {n}" for n in lut.notes)
        return out


def summarize(lut: Lut) -> LutSummary:
    """Probe ``lut`` on a grid spanning its input domain (ends included) through OpenColorIO."""
    axes = [np.linspace(a, b, _GRID, dtype=np.float32) for a, b in zip(lut.domain_min, lut.domain_max, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    out = apply_float(lut, grid)
    return LutSummary(
        lut=lut,
        out_min=tuple(float(v) for v in out.min(axis=0)),  # type: ignore[arg-type]
        out_max=tuple(float(v) for v in out.max(axis=0)),  # type: ignore[arg-type]
        max_deviation=float(np.abs(out - grid).max()),
    )


def _fmt(t: Triple) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in t) + "]"


def _domain(lo: Triple, hi: Triple) -> str:
    if len(set(lo)) == 1 and len(set(hi)) == 1:
        return f"[{lo[0]:.6g}, {hi[0]:.6g}]"
    return f"{_fmt(lo)} .. {_fmt(hi)}"
