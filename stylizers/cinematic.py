"""The cinematic look: a LUT, an S-curve, saturation, bloom in linear light, seeded film grain, vignette.

Every per-pixel colour operation (exposure, curve, saturation, LUT) is folded into one baked 256^3 table
(cached on disk by content), so the whole grade costs one lookup per pixel. Bloom is computed on a
quarter-size copy in linear light; grain is seeded by (seed, frame index), so re-renders and resumed
chunks are identical. Each effect is off at its neutral value, and all off is the identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import color
from core.errors import ConfigError
from core.frames import to_float, to_uint8

from .base import Styled, Stylizer

BUNDLED_LUTS = Path(__file__).resolve().parent.parent / "luts"


def lut_folders() -> list[Path]:
    """Where a LUT named without a path is looked for: the bundled ``luts/`` and ``$VP_HOME/luts``."""
    from core.presets import studio_home

    return [BUNDLED_LUTS, studio_home() / "luts"]


def resolve_lut(name: str) -> Path:
    """A LUT path from a path or a bare name (``teal_orange`` or ``teal_orange.cube``) in the LUT folders."""
    p = Path(name).expanduser()
    if p.is_file():
        return p.resolve()
    for folder in lut_folders():
        for cand in (folder / name, folder / f"{name}.cube"):
            if cand.is_file():
                return cand.resolve()
    names = sorted({f.stem for d in lut_folders() if d.is_dir() for f in d.glob("*.cube")})
    raise ConfigError(f"lut {name!r}: no such file, and no LUT of that name (available: {', '.join(names) or 'none'})")


@dataclass(frozen=True)
class CinematicParams:
    lut: str = field(default="", metadata={"help": "a .cube file, or a LUT name from the LUT folders; empty = none"})
    lut_mix: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0, "help": "blend of the LUT over the input"})
    exposure: float = field(default=0.0, metadata={"min": -4.0, "max": 4.0, "help": "stops, applied in linear light"})
    curve: float = field(default=0.25, metadata={"min": 0.0, "max": 1.0, "help": "S-curve contrast; 0 = off"})
    saturation: float = field(default=1.0, metadata={"min": 0.0, "max": 2.0, "help": "1 = unchanged, 0 = gray"})
    bloom: float = field(default=0.2, metadata={"min": 0.0, "max": 2.0, "help": "glow around highlights; 0 = off"})
    bloom_threshold: float = field(default=0.7, metadata={"min": 0.0, "max": 1.0,
                                                          "help": "linear luminance where highlights start to glow"})
    bloom_radius: float = field(default=0.02, metadata={"min": 0.002, "max": 0.2,
                                                        "help": "glow radius as a fraction of frame height"})
    grain: float = field(default=0.15, metadata={"min": 0.0, "max": 1.0, "help": "film grain strength; 0 = off"})
    grain_size: float = field(default=1.5, metadata={"min": 1.0, "max": 4.0, "help": "grain size in pixels"})
    vignette: float = field(default=0.25, metadata={"min": 0.0, "max": 1.0, "help": "corner darkening; 0 = off"})
    transfer: str = field(default="srgb", metadata={"choices": ("srgb", "rec709", "gamma2.2", "gamma2.4"),
                                                    "help": "how the video encodes light, for linear-light effects"})
    seed: int = field(default=0, metadata={"min": 0, "max": 2**31 - 1, "help": "seed of the grain"})


def s_curve(x: np.ndarray, amount: float) -> np.ndarray:
    """A contrast S-curve on [0, 1] that keeps 0, 0.5 and 1 fixed: a blend towards smoothstep."""
    smooth = x * x * (3.0 - 2.0 * x)
    return x + np.float32(amount) * (smooth - x)


def _grade_fn(p: CinematicParams, decode: Any, encode: Any) -> Any:
    """The per-pixel grade before the LUT, as a float function on (N, 3) in [0, 1], or None if neutral."""
    if p.exposure == 0 and p.curve == 0 and p.saturation == 1:
        return None
    gain = np.float32(2.0**p.exposure)

    def fn(x: np.ndarray) -> np.ndarray:
        if gain != 1:
            x = encode(np.clip(decode(x) * gain, 0.0, 1.0))
        if p.curve:
            x = s_curve(x, p.curve)
        if p.saturation != 1:
            luma = x @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)
            x = luma[:, None] + np.float32(p.saturation) * (x - luma[:, None])
        return np.clip(x, 0.0, 1.0)

    return fn


class Cinematic(Stylizer):
    name = "cinematic"
    description = "Cinematic look: LUT, S-curve, saturation, bloom in linear light, seeded film grain, vignette."
    Params = CinematicParams
    stabilise = False  # a grade does not flicker by itself, and smoothing would smear the grain

    def __init__(self, params: CinematicParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        p = self.params
        self._lut = color.read_lut(resolve_lut(p.lut)) if p.lut else None
        self._decode = color.decode_table(p.transfer)  # uint8 code -> linear float32
        self._table = self._bake()
        self._vignette: tuple[tuple[int, int], np.ndarray] | None = None

    @classmethod
    def files(cls, params: CinematicParams) -> list[str]:
        return [str(resolve_lut(params.lut))] if params.lut else []

    @classmethod
    def analyze(cls, params: CinematicParams, samples: list[np.ndarray]) -> dict[str, Any]:
        """Bake (or load) the grade table once per job, so chunk workers only read the cache."""
        cls(params)
        return {}

    def _bake(self) -> np.ndarray | None:
        """The grade folded into one 256^3 table (cached on disk by LUT content and these parameters)."""
        p = self.params
        t = color.TRANSFERS[p.transfer]
        fn = _grade_fn(p, t.to_linear, t.from_linear)
        lut = self._lut if p.lut_mix > 0 else None
        if fn is None and lut is None:
            return None
        key = json.dumps({k: getattr(p, k) for k in ("exposure", "curve", "saturation", "transfer")}, sort_keys=True)
        return color.bake_u8(lut, f"cinematic:{key}", pre=fn, mix=p.lut_mix if lut is not None else 1.0)

    def _vignette_mask(self, h: int, w: int) -> np.ndarray:
        if self._vignette is None or self._vignette[0] != (h, w):
            y, x = np.ogrid[0:h, 0:w]
            r2 = ((x - (w - 1) / 2) / (w / 2)) ** 2 + ((y - (h - 1) / 2) / (h / 2)) ** 2
            mask = 1.0 - self.params.vignette * np.clip(r2 / 2.0, 0, 1) ** 1.5
            self._vignette = ((h, w), np.ascontiguousarray(np.repeat(mask[..., None], 3, axis=2), np.float32))
        return self._vignette[1]

    def _bloom(self, lin: np.ndarray) -> np.ndarray:
        """Bright-pass, blur at quarter size, back to full size: (H, W, 3) float32 linear glow."""
        p = self.params
        h, w = lin.shape[:2]
        small = cv2.resize(lin, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
        luma = small @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)
        knee = np.clip((luma - p.bloom_threshold) / max(1e-3, 1.0 - p.bloom_threshold), 0, 1)[..., None]
        sigma = max(0.5, p.bloom_radius * h / 4)
        glow = cv2.GaussianBlur(small * knee, (0, 0), sigma)
        return cv2.resize(glow, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(p.bloom)

    def _grain(self, shape: tuple[int, int], index: int) -> np.ndarray:
        """Gaussian grain, (H, W) float32 with sd 1, seeded by (seed, frame index), at ``grain_size`` pixels."""
        h, w = shape
        s = self.params.grain_size
        rng = np.random.default_rng([self.params.seed, index])
        small = rng.standard_normal((max(1, round(h / s)), max(1, round(w / s))), dtype=np.float32)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(s ** 0.5)

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        p = self.params
        out = color.apply_u8(self._table, rgb) if self._table is not None else rgb
        if p.bloom > 0 or p.vignette > 0:
            lin = cv2.LUT(out, self._decode)  # (H, W, 3) float32 linear light
            if p.bloom > 0:
                lin += self._bloom(lin)
            if p.vignette > 0:
                lin *= self._vignette_mask(*lin.shape[:2])
            out = color.encode_u8(p.transfer, lin)
        if p.grain > 0:
            g = to_float(out)
            luma = g @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)
            weight = 4.0 * luma * (1.0 - luma)  # film grain lives in the mid-tones
            noise = self._grain(out.shape[:2], index) * (np.float32(p.grain * 0.08) * weight)
            out = to_uint8(g + noise[..., None])
        return Styled(base=out if out is not rgb else rgb)
