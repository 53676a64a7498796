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
from core.assets import resolve_asset
from core.video.frames import to_uint8

from .base import Styled, Stylizer
from .signature import Floor, tone


def resolve_lut(name: str) -> Path:
    """A LUT path from a path or a name in ``luts/`` or ``$VP_HOME/luts``."""
    return resolve_asset(name, "luts", ".cube")


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


def _packed_grade(p: CinematicParams, load: bool) -> np.ndarray | None:
    """The grade folded into one 256^3 table, packed for lookup (cached on disk by LUT content and these
    parameters); None when the grade is neutral. ``load=False`` only makes sure the cache holds it."""
    t = color.TRANSFERS[p.transfer]
    fn = _grade_fn(p, t.to_linear, t.from_linear)
    lut_file = resolve_lut(p.lut) if p.lut and p.lut_mix > 0 else None
    if fn is None and lut_file is None:
        return None
    key = json.dumps({k: getattr(p, k) for k in ("exposure", "curve", "saturation", "transfer")}, sort_keys=True)
    return color.packed_table(lut_file, f"cinematic:{key}", pre=fn, mix=p.lut_mix if lut_file else 1.0, load=load)


#: the glow is computed at 1/GLOW_SCALE of the frame's size (:meth:`Cinematic._glow`) and resized back up
GLOW_SCALE = 4
#: full-size rows the bloom takes at a time (:meth:`Cinematic._bloom`): few enough bands that their Python
#: costs nothing (23 at 720p), narrow enough to follow where the highlights are
BLOOM_BAND = 32
#: neighbouring bands are taken in one piece when that adds at most this share of pixels (per call, each
#: of the bloom's passes costs ~30 us; a frame lit from top to bottom is then one piece, as before)
BLOOM_MERGE = 1.25


#: ``cv2.transform`` matrix summing a pixel's three channels
_SUM_ROW = np.ones((1, 3), np.float32)


def _taps(y0: int, y1: int, small: int, full: int) -> tuple[int, int]:
    """The range of rows of a ``small``-row image that a bilinear resize to ``full`` rows reads for output
    rows ``y0`` .. ``y1 - 1`` (with a row to spare each side)."""
    k = small / full
    return max(0, int((y0 + 0.5) * k - 0.5) - 1), min(small, int((y1 - 0.5) * k - 0.5) + 3)


def _reach(q0: int, q1: int, small: int, full: int) -> tuple[int, int]:
    """The range of full-size columns whose bilinear taps reach columns ``q0`` .. ``q1 - 1`` of the ``small``
    one (a column to spare each side)."""
    k = full / small
    return max(0, int((q0 - 1 + 0.5) * k - 0.5) - 1), min(full, int((q1 + 0.5) * k - 0.5) + 2)


def _upsampled(glow: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Rows ``y0:y1``, columns ``x0:x1`` of ``glow`` resized bilinearly by :data:`GLOW_SCALE`, the same numbers
    as that slice of the whole resize: the block of ``glow`` those pixels read, a row and a column to spare each side,
    resized by the same factor, interpolates at the same phases from the same samples (0.3 ms for a 720p band
    of 32 rows, the whole frame 1.5 ms)."""
    gh, gw, k = *glow.shape[:2], GLOW_SCALE
    a, b = max(0, y0 // k - 1), min(gh, (y1 - 1) // k + 2)
    c, d = max(0, x0 // k - 1), min(gw, (x1 - 1) // k + 2)
    block = cv2.resize(glow[a:b, c:d], (k * (d - c), k * (b - a)), interpolation=cv2.INTER_LINEAR)
    return block[y0 - k * a:y1 - k * a, x0 - k * c:x1 - k * c]


class Cinematic(Stylizer):
    name = "cinematic"
    description = "Cinematic look: LUT, S-curve, saturation, bloom in linear light, seeded film grain, vignette."
    Params = CinematicParams
    stabilise = False  # a grade does not flicker by itself, and smoothing would smear the grain
    #: its grade: exposure, tone curve and colour stay within a band of the defaults' (a flatter, darker or
    #: greyer picture flickers less), and no blur, which here also keeps most of the film grain
    floors = (Floor("luma_mean", 0.85, 1.18, slack=0.01, label="mean luma"),
              Floor("contrast", 0.8, 1.25, slack=0.01),
              Floor("saturation", 0.8, 1.25, slack=0.01),
              Floor("sharpness", 0.8))

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """The grade of the output (:func:`.signature.tone`): ``luma_mean``, ``contrast``, ``saturation``."""
        return tone(out)

    def __init__(self, params: CinematicParams | None = None, shared: Mapping[str, Any] | None = None) -> None:
        super().__init__(params, shared)
        p = self.params
        self._decode = color.decode_table(p.transfer)  # uint8 code -> linear float32
        self._table = _packed_grade(p, load=True)
        self._vignette: tuple[tuple[int, int], np.ndarray] | None = None
        self._grain_tex: tuple[tuple[int, int], np.ndarray] | None = None
        luma = np.arange(256, dtype=np.float32) / np.float32(255)
        self._grain_weight = (4.0 * luma * (1.0 - luma) * np.float32(p.grain * 0.08 * 255)).astype(np.float32)

    @property
    def pixel_table(self) -> np.ndarray | None:
        """The packed grade table (``core.color.pack_table``) when the look is that per-pixel lookup alone
        (no bloom, vignette or grain), else None. The pipeline then applies it to the decoder's 4-byte
        pixels directly (``core.color.lookup_rgbx``): the same output as :meth:`stylize`, fewer copies."""
        p = self.params
        return self._table if p.bloom == 0 and p.vignette == 0 and p.grain == 0 else None

    @classmethod
    def files(cls, params: CinematicParams) -> list[str]:
        return [str(resolve_lut(params.lut))] if params.lut else []

    @classmethod
    def analyze(cls, params: CinematicParams, samples: list[np.ndarray]) -> dict[str, Any]:
        """Bake the grade table once per job (into the disk cache), so chunk workers only load it."""
        _packed_grade(params, load=False)  # bakes into the disk cache on first use, else costs nothing
        return {}

    def _vignette_mask(self, h: int, w: int) -> np.ndarray:
        """(H, W, 3) uint8 gain in 255ths, 255 in the centre falling towards the corners; made once per frame
        size. In 255ths so the vignette is a uint8 product (0.5 ms a 720p frame; by a float gain 1.7 ms)."""
        if self._vignette is None or self._vignette[0] != (h, w):
            y, x = np.ogrid[0:h, 0:w]
            r2 = ((x - (w - 1) / 2) / (w / 2)) ** 2 + ((y - (h - 1) / 2) / (h / 2)) ** 2
            mask = to_uint8(1.0 - self.params.vignette * np.clip(r2 / 2.0, 0, 1) ** 1.5)
            self._vignette = ((h, w), cv2.merge([mask, mask, mask]))
        return self._vignette[1]

    def _glow(self, rgb: np.ndarray) -> np.ndarray:
        """Bright-pass and blur at 1/:data:`GLOW_SCALE` size in linear light: (h/4, w/4, 3) float32, times
        ``bloom``."""
        p = self.params
        h, w = rgb.shape[:2]
        small = cv2.LUT(cv2.resize(rgb, (max(1, w // GLOW_SCALE), max(1, h // GLOW_SCALE)),
                                   interpolation=cv2.INTER_AREA),
                        self._decode)
        luma = small @ np.asarray([0.2126, 0.7152, 0.0722], np.float32)
        knee = np.clip((luma - p.bloom_threshold) / max(1e-3, 1.0 - p.bloom_threshold), 0, 1)
        glow = cv2.GaussianBlur(small * knee[..., None], (0, 0), max(0.5, p.bloom_radius * h / GLOW_SCALE))
        return glow * np.float32(p.bloom)

    def _bloom(self, out: np.ndarray) -> np.ndarray:
        """``out`` with its glow added in linear light and encoded back, computed only where the glow is not 0.

        Most of a frame has no glow (the knee keeps 60-90 % of the pixels of most real clips dark), and a pixel
        without glow encodes back to its own code (``encode_u8(decode_u8(c)) == c`` for every code), so the
        frame is taken in bands of :data:`BLOOM_BAND` rows, each from the first to the last column its glow
        reaches; the rest is left as it is. ``out`` is modified in place and returned."""
        h, w = out.shape[:2]
        glow = self._glow(out)
        total = cv2.transform(glow, _SUM_ROW)  # (gh, gw): > 0 where any channel glows (none is below 0)
        lit = cv2.reduce(total, 1, cv2.REDUCE_MAX)[:, 0] > 0  # quarter-size rows
        if not lit.any():
            return out
        gh, gw = glow.shape[:2]
        rects: list[list[int]] = []  # [y0, y1, x0, x1, pixels that need it]
        for y0 in range(0, h, BLOOM_BAND):
            y1 = min(h, y0 + BLOOM_BAND)
            # the quarter-size rows whose bilinear taps reach full-size rows y0..y1-1 (one more each side)
            r0, r1 = _taps(y0, y1, gh, h)
            if not lit[r0:r1].any():
                continue
            cols = np.flatnonzero(cv2.reduce(total[r0:r1], 0, cv2.REDUCE_MAX)[0])
            x0, x1 = _reach(int(cols[0]), int(cols[-1]) + 1, gw, w)
            need = (y1 - y0) * (x1 - x0)
            last = rects[-1] if rects else None
            if last is not None and last[1] == y0:  # one call for neighbours when that costs few extra pixels
                ux0, ux1 = min(last[2], x0), max(last[3], x1)
                if (y1 - last[0]) * (ux1 - ux0) <= BLOOM_MERGE * (last[4] + need):
                    last[1:] = [y1, ux0, ux1, last[4] + need]
                    continue
            rects.append([y0, y1, x0, x1, need])
        exact = (h, w) == (GLOW_SCALE * gh, GLOW_SCALE * gw)  # else resized whole, by a fractional factor
        whole = None if exact else cv2.resize(glow, (w, h), interpolation=cv2.INTER_LINEAR)
        for y0, y1, x0, x1, _ in rects:
            band = out[y0:y1, x0:x1]
            lin = cv2.LUT(band, self._decode)
            lin += _upsampled(glow, y0, y1, x0, x1) if whole is None else whole[y0:y1, x0:x1]
            band[:] = color.encode_u8(self.params.transfer, lin)
        return out

    def _grain_field(self, h: int, w: int, index: int) -> np.ndarray:
        """(H, W) float32 grain with sd ~1 for frame ``index``: a window of a seeded texture twice the frame's
        size, at an offset drawn from (seed, index). Deterministic per frame, and ~free per frame."""
        if self._grain_tex is None or self._grain_tex[0] != (h, w):
            s = self.params.grain_size
            rng = np.random.default_rng([self.params.seed, h, w])
            small = rng.standard_normal((max(1, round(2 * h / s)), max(1, round(2 * w / s))), dtype=np.float32)
            tex = cv2.resize(small, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
            self._grain_tex = ((h, w), tex * np.float32(1.0 / max(1e-6, float(tex.std()))))
        oy, ox = np.random.default_rng([self.params.seed, index]).integers(0, [h, w])
        return self._grain_tex[1][oy:oy + h, ox:ox + w]

    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        p = self.params
        out = color.lookup_u8(self._table, rgb) if self._table is not None else rgb
        h, w = out.shape[:2]
        if p.bloom > 0:  # glow is light: added in linear light, then encoded back (in place: never the input)
            out = self._bloom(out if out is not rgb else rgb.copy())
        if p.vignette > 0:
            out = cv2.multiply(out, self._vignette_mask(h, w), scale=1 / 255)
        if p.grain > 0:  # film grain lives in the mid-tones: weight 4 L (1 - L) by display luma
            weight = cv2.LUT(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY), self._grain_weight)
            noise = cv2.multiply(self._grain_field(h, w, index), weight)
            # round(code + noise), saturated, as uint8 sums: the noise's rounded light and dark parts are added
            # and subtracted with saturation (one of them is 0 at each pixel); OpenCV's uint8 + float32 sum
            # took twice as long for the same bytes
            light = cv2.convertScaleAbs(cv2.max(noise, 0.0))
            dark = cv2.convertScaleAbs(cv2.min(noise, 0.0))
            out = cv2.subtract(cv2.add(out, cv2.merge([light, light, light])), cv2.merge([dark, dark, dark]))
        return Styled(base=out)
