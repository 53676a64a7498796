"""The stylizer protocol: a params dataclass, an optional job-wide analysis, and a per-frame call.

A stylizer returns :class:`Styled` layers rather than a flat image so the temporal stage can stabilise
line work (edges, pencil strokes) separately from the colour base, then compose them. That keeps the
flow one way: stylize -> temporal -> encode.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from core.errors import UnsupportedVideoError

from .signature import Floor


def thin_min_side(long_side: int) -> int:
    """Least shorter side, pixels, of a frame whose longer side is ``long_side`` that a render takes: its
    per-frame metrics run on a copy at most 320 px long, whose SSIM needs a 7x7 window (7 px of 320). The
    optical flow takes any size (:func:`core.video.flow.dis_shape` pads what DIS cannot)."""
    return -(-7 * long_side // 320)


@dataclass(frozen=True)
class Styled:
    """A stylized frame as layers.

    ``base``: (H, W, 3) uint8 RGB. ``lines``: None, or (H, W) float32 in [0, 1], the ink coverage laid
    over the base in colour ``ink``.
    """

    base: np.ndarray
    lines: np.ndarray | None = None
    ink: tuple[int, int, int] = (0, 0, 0)


def compose(base: np.ndarray, lines: np.ndarray | None, ink: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Lay ``lines`` (ink coverage, float32 [0, 1]) over ``base`` (uint8 or float32 [0, 255]) -> uint8 RGB.

    ``cv2.blendLinear`` does the per-pixel mix in one pass (4x faster than NumPy broadcasting here). This
    runs in the temporal stage's in-order part of every stabilised frame, so float becomes uint8 in one
    OpenCV pass (:func:`_rounded`, 0.2 ms a 720p frame; NumPy's scale, round and clip took 1.2 ms).
    """
    if lines is None:
        return base if base.dtype == np.uint8 else _rounded(base)
    out = cv2.blendLinear(base, ink_image(base.shape, base.dtype.str, tuple(ink)), 1.0 - lines, lines)
    return out if out.dtype == np.uint8 else _rounded(out)


@functools.lru_cache(maxsize=4)
def ink_image(shape: tuple[int, ...], dtype: str, ink: tuple[int, ...]) -> np.ndarray:
    """An image filled with the ink colour (one value per channel), made once per shape: read-only, so
    threads may share it."""
    img = np.empty(shape, np.dtype(dtype))
    img[:] = ink
    img.flags.writeable = False
    return img


def _rounded(x: np.ndarray) -> np.ndarray:
    """Float [0, 255] -> uint8, rounded to nearest (ties to even), saturated above 255. Nothing may be below 0
    (an absolute value is taken): blends of layers in range, with weights in [0, 1], never are."""
    return cv2.convertScaleAbs(x)


@dataclass(frozen=True)
class NoParams:
    """A style with nothing to set."""


class Stylizer(ABC):
    """Base class of every style. Subclasses set ``name``, ``Params`` and ``description``.

    ``shared`` is the JSON-serialisable result of :meth:`analyze`, computed once per job from sampled
    frames, so every chunk (in any process) stylizes with the same palette/texture.
    Calls must be deterministic in (frame, index) and must never mutate the input frame.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type] = NoParams
    #: False for styles whose output must equal the input (no temporal smoothing by default).
    stabilise: ClassVar[bool] = True
    #: the temporal mode the style's output needs in place of the preset's ``ema``/``flow`` ("": the
    #: preset's), see :meth:`core.presets.TemporalConfig.for_style`.
    temporal_mode: ClassVar[str] = ""
    #: how many frames analyze() wants, sampled evenly over the clip.
    analysis_samples: ClassVar[int] = 0
    #: modules whose ``warm()`` a render worker calls on a thread of its own as it starts, while the job's
    #: analysis runs (:class:`core.render.pool.LocalPool`): one-time set-up the style would otherwise pay on
    #: the render's critical path.
    warm_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Any = None, shared: Mapping[str, Any] | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.shared = dict(shared or {})

    @classmethod
    def analyze(cls, params: Any, samples: list[np.ndarray]) -> dict[str, Any]:
        """Job-wide state from sampled RGB frames; JSON-serialisable. Default: nothing."""
        return {}

    #: What the style needs beyond its defaults before it can render (e.g. "a model: --set model=NAME");
    #: empty when the defaults render. The demo skips such styles and says why.
    requires: ClassVar[str] = ""
    #: True only for styles that leave every pixel as decoded (the pipeline may then copy frames as-is).
    passthrough: bool = False
    #: Least width and height, in pixels, of frames the style renders. 16 for every style here: the styles
    #: themselves run on 1x1 frames, but the per-frame metrics after any style need a 7x7 SSIM window (and DIS
    #: flow is padded below 16 px). A style needing more raises it.
    min_size: ClassVar[int] = 16

    #: What makes the style itself (:mod:`.signature`): floors on measures of its output, each relative to the
    #: output of the style's defaults on the same frames; the auto-tuner keeps every candidate within them. A
    #: floor names one of :meth:`measures` or a per-frame metric (``sharpness``). Default: the picture must
    #: not blur.
    floors: ClassVar[tuple[Floor, ...]] = (Floor("sharpness", 0.8),)

    @classmethod
    def measures(cls, source: np.ndarray, styled: Styled, out: np.ndarray) -> dict[str, float]:
        """Named measures of one stylised frame that :attr:`floors` read. ``source``: the input frame;
        ``styled``: what :meth:`stylize` made of it; ``out``: the frame a render writes (after the temporal
        stage); (H, W, 3) uint8 RGB. Default: none (the floors read per-frame metrics only)."""
        return {}

    @classmethod
    def check_size(cls, path: str, width: int, height: int) -> None:
        """Refuse, before any frame is read, a clip whose frames a render in this style cannot take: smaller
        than :attr:`min_size` on a side, or too thin for the metrics' copy (:func:`thin_min_side`: a 8192x64
        clip), which would end in a library's own message. Raises :class:`~core.errors.UnsupportedVideoError`
        naming the file, its size and the minimum."""
        cls.check_min_size(path, width, height)
        short, long_ = sorted((width, height))
        need = thin_min_side(long_)
        if short < need:
            raise UnsupportedVideoError(f"{path}: {width}x{height} frames are too thin for style {cls.name!r} (at "
                                        f"{long_} px on the longer side, at least {need} px on the shorter)")

    @classmethod
    def check_min_size(cls, path: str, width: int, height: int) -> None:
        """The :attr:`min_size` half of :meth:`check_size`."""
        if min(width, height) < cls.min_size:
            raise UnsupportedVideoError(f"{path}: {width}x{height} frames are too small for style {cls.name!r} "
                                        f"(at least {cls.min_size}x{cls.min_size})")

    @classmethod
    def pin(cls, params: Any) -> Any:
        """``params`` with every name that can move (a model's active version) resolved to what it names
        now, so all chunks of a job, on any worker and after a resume, read the same files. Default: as is."""
        return params

    @classmethod
    def temporal_sets(cls, params: Any) -> dict[str, str]:
        """``temporal.*`` settings the style's (pinned) ``params`` bring with them, applied unless the user set
        the same keys (e.g. a model's declared stabiliser hold). Default: none."""
        return {}

    @classmethod
    def chosen(cls, params: Any) -> dict[str, str]:
        """What each of ``params``' "automatic" values (a tile of 0, a range of 0, channels "auto") resolves to
        here and now, as words for the pages: ``{"tile": "512 px, from free memory"}``. A setting that says
        nothing of what it will do is a guess for the user. Default: no automatic values."""
        return {}

    @classmethod
    def files(cls, params: Any) -> list[str]:
        """Files (LUTs, models) the style reads; their content hashes join the job hash."""
        return []

    @abstractmethod
    def stylize(self, rgb: np.ndarray, index: int) -> Styled:
        """(H, W, 3) uint8 RGB frame number ``index`` -> layers of the same size."""

    def batch_size(self, height: int, width: int) -> int:
        """Frames worth styling in one :meth:`stylize_batch` call at this size: 1 for a style that works a
        frame at a time; a neural style on a GPU takes several (one upload, one run, one download)."""
        return 1

    def stylize_batch(self, frames: list[np.ndarray], indices: list[int]) -> list[Styled]:
        """:meth:`stylize` on several frames; the same layers as one call per frame (on a CPU bit for bit)."""
        return [self.stylize(rgb, i) for rgb, i in zip(frames, indices, strict=True)]

    def __call__(self, rgb: np.ndarray, index: int) -> np.ndarray:
        s = self.stylize(rgb, index)
        return compose(s.base, s.lines, s.ink)
