"""The report's vocabulary: reading a figure, writing it, and the target it is held to.

The report is read leniently: a missing, None, non-numeric or non-finite figure is "not measured", so a
section the benchmark did not run (or an older report) gives no rows rather than an error or an invented
number. Every table and chart formats its figures through the helpers here, so one figure reads the same
everywhere; the targets are the benchmark's goals (:mod:`scripts.bench`), each with the text its column
shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: what a target column adds when the figure misses it
NOT_MET = " (not met)"
#: the stage columns of the stages table and chart, in the order a frame goes through them
STAGES = ("decode", "stylize", "motion", "temporal", "measure", "encode")


# -- reading the report leniently: a missing, None, non-numeric or non-finite figure is "not measured" --

def _sec(d: Any, key: str) -> dict:
    """The sub-dict ``d[key]``, or {} when the section is absent, None or malformed (so it gives no rows)."""
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, dict) else {}


def _finite(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _num(d: Any, key: str) -> float | None:
    """``d[key]`` as a finite float, else None: the tables never print a figure that was not measured."""
    v = d.get(key) if isinstance(d, dict) else None
    return float(v) if _finite(v) else None


def _nums(d: Any, *keys: str) -> tuple[float, ...] | None:
    """All of ``keys`` as floats, or None when any is missing (a row needs all its figures)."""
    vals = [_num(d, k) for k in keys]
    return None if any(v is None for v in vals) else tuple(vals)  # type: ignore[return-value]


# -- formatting: fps 1 decimal (2 below 1 fps, so a slow model never reads 0.0), ratios 2 decimals + "x" --

def _fps(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.1f}"


def _x(v: float) -> str:
    return f"{v:.2f}x"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _g(v: float) -> str:
    """A target threshold: as short as it can be without losing digits (0.9, 3, 1.5)."""
    return f"{v:g}"


def _cell(text: str) -> str:
    """Free text (style names, the bottleneck) must not break the Markdown table."""
    return str(text).replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Target:
    """A goal on one figure: ``>=`` or ``<=`` a threshold; ``text`` is what the target column says."""

    op: str
    value: float
    text: str

    def met(self, v: float) -> bool:
        return v >= self.value if self.op == ">=" else v <= self.value

    def column(self, *values: float, extra_ok: bool = True) -> str:
        """The target column: the goal, plus "(not met)" when any of ``values`` (or ``extra_ok``) misses it."""
        ok = extra_ok and all(self.met(v) for v in values)
        return self.text + ("" if ok else NOT_MET)


IDENTITY = Target(">=", 0.95, ">= 0.95x")
IDENTITY_LONG = Target(">=", 1.0, ">= 1.0x")
SPEED_CLASSICAL = Target(">=", 0.30, ">= 0.30x")
SPEED_PRESET = Target(">=", 0.5, ">= 0.5x")
LUT_ONLY = Target(">=", 1.5, ">= 1.5x")
FULL_LOOK = Target(">=", 0.5, ">= 0.5x")
BUSY = Target(">=", 0.85, ">= 0.85")
SCALING = Target(">=", 1.0, ">= 1.0x")
DASK = Target(">=", 0.9, ">= 0.9x")
MEMORY = Target("<=", 1.1, "<= 1.1x")
ORT = Target(">=", 1.3, ">= 1.3x")
COMPACT = Target(">=", 3.0, ">= 3x")
INT8 = Target(">=", 1.5, ">= 1.5x at >= 32 dB")
INT8_PSNR = 32.0
METRICS = Target("<=", 0.15, "<= 15%")
ANALYSIS = Target("<=", 0.10, "<= 10%")
FLICKER = Target("<=", 0.25, "<= 0.25x at >= 0.95")
FLICKER_SSIM = 0.95
NEURAL_FLICKER = Target("<=", 0.25, "<= 0.25x at >= 0.90 (third-party)")
NEURAL_FLICKER_SSIM = 0.90
BUNDLED_FLICKER = Target("<=", 0.3, "<= 0.3x at >= 0.95 (bundled)")
PREVIEW = Target("<=", 1.0, "<= 1 s")
RATE_PAIR = Target("<=", 3.0, "<= 3 s")
PREFERENCE_FIT = Target("<=", 2.0, "<= 2 s")
FINETUNE_DB = Target(">=", 28.0, ">= 28 dB within 5 min")


@dataclass(frozen=True)
class FidelityGoal:
    """A bundled model's goal against its teacher (issue 18): PSNR floor, sharpness over the teacher's in
    [low, high], over the input's at least ``vs_input``; and for every model >= 1.5 fps at 720p, <= 10 MB."""

    psnr: float = 0.0
    low: float = 0.0
    high: float = math.inf
    vs_input: float = 0.0

    def met(self, psnr: float, vs_teacher: float, vs_input: float, fps: float, mb: float) -> bool:
        return (psnr >= self.psnr and self.low <= vs_teacher <= self.high and vs_input >= self.vs_input
                and fps >= BUNDLED_FPS and mb <= BUNDLED_MB)

    def text(self) -> str:
        parts = [f">= {self.psnr:g} dB"] if self.psnr else []
        if self.low or self.high != math.inf:
            parts.append(f"{self.low:g}-{self.high:g}x teacher")
        if self.vs_input:
            parts.append(f">= {self.vs_input:g}x input")
        return ", ".join([*parts, f">= {BUNDLED_FPS:g} fps"])


BUNDLED_FPS, BUNDLED_MB = 1.5, 10.0
BUNDLED = {"teal": FidelityGoal(psnr=34.0, vs_input=0.9), "sketch": FidelityGoal(psnr=28.0, low=0.5, high=2.0)}
QUEUE = Target("<=", 2.0, "<= 2 s")
LIVE = Target("<=", 0.02, "<= 2% of render time")
API_LIST = Target("<=", 100.0, "<= 100 ms")
OF_LIMIT = Target(">=", 0.9, ">= 90% of the machine limit")
PIPE_VS_SEQ = Target(">=", 1.0, ">= 1.0x (not slower)")

Row = tuple[str, str, str]


def _repeat(sec: dict) -> int | None:
    """How many alternating runs each median is of, when the section says and it is more than one."""
    r = sec.get("repeat")
    return r if isinstance(r, int) and not isinstance(r, bool) and r > 1 else None


