"""Regenerate the bundled look LUTs in ``luts/`` (our own looks, made from formulas, so we may ship them).

``python -m scripts.make_luts``. Each look is a function on display-referred RGB in [0, 1]; the result is
written as a 33^3 Iridas/Resolve-compatible ``.cube`` file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.color import write_cube

OUT = Path(__file__).resolve().parent.parent / "luts"
LUMA = np.asarray([0.2126, 0.7152, 0.0722], np.float32)


def _luma(x: np.ndarray) -> np.ndarray:
    return (x @ LUMA)[..., None]


def teal_orange(x: np.ndarray) -> np.ndarray:
    """Blockbuster split-toning: shadows pushed to teal, skin and highlights to orange."""
    y = _luma(x)
    teal, orange = np.asarray([0.0, 0.45, 0.55], np.float32), np.asarray([1.0, 0.6, 0.25], np.float32)
    tint = (1 - y) * teal + y * orange
    out = x + 0.22 * (tint - 0.5) * (1 - np.abs(2 * y - 1) * 0.5)
    return np.clip(y + 1.1 * (out - y), 0, 1)


def bleach_bypass(x: np.ndarray) -> np.ndarray:
    """Silver retained: desaturated, harder contrast, like skipping the bleach bath."""
    y = _luma(x)
    mono = np.clip((y - 0.5) * 1.35 + 0.5, 0, 1)
    overlay = np.where(mono < 0.5, 2 * x * mono, 1 - 2 * (1 - x) * (1 - mono))
    return np.clip(0.55 * overlay + 0.45 * mono, 0, 1)


def warm_film(x: np.ndarray) -> np.ndarray:
    """Soft print film: lifted blacks, rolled-off whites, a warm cast."""
    lifted = 0.04 + 0.92 * x
    rolled = lifted - 0.12 * lifted**3 + 0.1 * lifted**2
    return np.clip(rolled * np.asarray([1.04, 1.0, 0.92], np.float32), 0, 1)


LOOKS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "teal_orange": teal_orange,
    "bleach_bypass": bleach_bypass,
    "warm_film": warm_film,
}


def main(size: int = 33) -> int:
    OUT.mkdir(exist_ok=True)
    axis = np.linspace(0, 1, size, dtype=np.float32)
    r, g, b = np.meshgrid(axis, axis, axis, indexing="ij")
    grid = np.stack([r, g, b], axis=-1)  # [r, g, b, 3]
    for name, fn in LOOKS.items():
        path = OUT / f"{name}.cube"
        write_cube(path, fn(grid.reshape(-1, 3)).reshape(grid.shape), title=name.replace("_", " "))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
