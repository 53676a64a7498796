"""What makes a style itself: named measures of its output, and floors on them relative to its defaults.

A tuner that lowers flicker can always win by erasing the style: a cartoon without its ink outlines, smeared
flat, flickers less (measured: sharpness 1785 -> 178) and even agrees better with the input's edges, so no
content metric protects the look. Each style therefore declares (:attr:`stylizers.base.Stylizer.floors`)
which measures of its output carry its identity, and how far a candidate's may fall (or rise) against the
output of the style's own defaults on the same frames: relative, because what a style reaches depends on
the clip. The measures are small pure functions of one frame, so the tuner never needs a style's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.video.frames import gray, to_float


@dataclass(frozen=True)
class Floor:
    """``measure`` of a candidate's output must stay at least ``low`` x the style defaults' value on the same
    frames and, when ``high`` is set, at most ``high`` x it (a band: a grade may drift neither way).

    ``measure`` names one of the style's :meth:`~stylizers.base.Stylizer.measures` or a per-frame metric of
    :mod:`core.quality.metrics` (``sharpness``). ``slack``: leeway either way in the measure's own units, for
    a reference near 0 (a grey clip's saturation, where any ratio of 0 is 0). ``label``: words for the
    reason; the name with spaces if empty.
    """

    measure: str
    low: float
    high: float | None = None
    slack: float = 0.0
    label: str = ""

    def breach(self, value: float | None, reference: float | None) -> str:
        """"" when ``value`` keeps this floor against the defaults' ``reference``; else the reason, naming the
        floor and the figures ("outline density 0.0012 below the floor 0.0416 (0.8x the defaults' 0.052)")."""
        name = self.label or self.measure.replace("_", " ")
        if reference is None:
            return ""  # the defaults show no such measure here (no frame to measure it on): nothing to keep
        if value is None or not np.isfinite(value):
            return f"{name} not measured"
        lo, hi = self.bounds(reference)
        if value < lo:
            return f"{name} {value:.4g} below the floor {lo:.4g} ({self.low:g}x the defaults' {reference:.4g})"
        if hi is not None and value > hi:
            return f"{name} {value:.4g} above the ceiling {hi:.4g} ({self.high:g}x the defaults' {reference:.4g})"
        return ""

    def bounds(self, reference: float) -> tuple[float, float | None]:
        """(floor, ceiling or None) in the measure's units against the defaults' ``reference``."""
        return (self.low * reference - self.slack,
                None if self.high is None else self.high * reference + self.slack)

    def describe(self, reference: float | None) -> str:
        """The floor in one phrase for a table's header: ``outline_density >= 0.0416`` (or a band)."""
        if reference is None:
            return f"{self.measure} >= {self.low:g}x the defaults'"
        lo, hi = self.bounds(reference)
        return f"{self.measure} >= {lo:.4g}" if hi is None else f"{self.measure} in {lo:.4g}..{hi:.4g}"


def ink_coverage(lines: np.ndarray | None) -> float:
    """Mean ink of a line layer ((H, W) float32 in [0, 1], see :class:`~stylizers.base.Styled`), 0 for none:
    the share of the frame on outlines or under graphite.

    Measured on the layer, not on the composed picture: a comic's halftone dots are as black as its outlines,
    so no threshold on the picture tells them apart, while the layer holds the lines alone. (Blur, which the
    layer cannot show, is the ``sharpness`` floor's job.)
    """
    return 0.0 if lines is None else float(cv2.mean(lines)[0])


def tone(rgb: np.ndarray) -> dict[str, float]:
    """The grade of an (H, W, 3) uint8 RGB frame, each on 0..1: ``luma_mean`` (exposure), ``contrast`` (the
    luma's standard deviation: the tone curve's spread) and ``saturation`` (mean of max - min channel)."""
    luma_mean, luma_sd = (float(v[0, 0]) / 255.0 for v in cv2.meanStdDev(gray(rgb)))
    f = to_float(rgb)
    spread = f.max(axis=2) - f.min(axis=2)
    return {"luma_mean": luma_mean, "contrast": luma_sd, "saturation": float(cv2.mean(spread)[0])}


def departure(source: np.ndarray, out: np.ndarray) -> float:
    """Mean absolute difference (0..1) of two (H, W, 3) uint8 RGB frames of one size: how far a style moved
    the picture from its input (a blend back towards the input is the cheapest way to flicker less)."""
    return float(np.mean(cv2.mean(cv2.absdiff(source, out))[:3])) / 255.0
