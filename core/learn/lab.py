"""The Style Lab's judgements on motion: a variant is a short clip around the offered frame, rendered as a
render would make it (the style's job-wide analysis, the temporal stabiliser with its pre-roll, resets at
cuts), measured per frame *and* over time, and shown beside the other variant in one video so the two
play in sync.

Why clips: a still cannot show flicker, so ratings made on stills could never teach "the one that flickers
less wins" (the preference model saw no temporal measure at all). The record keeps the window's time range,
its middle frame's pixels, and the window's mean metrics, temporal ones included (warping error, temporal
SSIM, flicker of flat areas), beside the parameters.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.errors import ConfigError
from core.quality.metrics import MetricsConfig, mean_metrics

#: seconds of video either side of the offered frame is shown and measured (a 1 s clip by default)
DEFAULT_SPAN = 1.0
#: frames stylised before the window and not shown, so the stabiliser is warm at its first frame as in a
#: render (at most this many: the full pre-roll can be 64 frames, which would triple the cost of a rating)
PREROLL = 4
#: the window is measured on every other frame (each with its predecessor, so every temporal measure is
#: there): the means hardly move, and measuring was a fifth of a variant's cost
MEASURE = MetricsConfig(every=2)
#: width of each side in the side-by-side video: two 720p frames side by side are wider than a browser column
SHOW_WIDTH = 640


@dataclass(frozen=True)
class ClipVariant:
    """One variant rendered over a window: its settings (as :class:`app.actions.Rendered`), the input and
    output frames of the window (uint8 RGB), ``middle`` (the offered frame's position in them), its time
    range in seconds and the window's mean metrics (:data:`core.quality.metrics.METRIC_NAMES`)."""

    style: str
    preset: str
    sets: dict[str, str]
    params: dict[str, Any]
    model: str
    t_range: tuple[float, float]
    sources: list[np.ndarray]
    frames: list[np.ndarray]
    middle: int
    metrics: dict[str, float]

    @property
    def rgb(self) -> np.ndarray:
        """The offered frame, stylised: what the record keeps as this side's picture."""
        return self.frames[self.middle]


def window(info: Any, index: int, span: float = DEFAULT_SPAN) -> tuple[int, int]:
    """Frame indices [start, stop) of the ``span``-second window centred on frame ``index``, clipped to the
    clip (shifted, not shortened, near its ends)."""
    if not 0 <= index < info.frame_count:
        raise ConfigError(f"{info.path}: frame {index} is outside the clip (0 .. {info.frame_count - 1})")
    fps = float(info.fps) if info.fps else 25.0
    n = max(2, min(info.frame_count, round(span * fps)))
    start = min(max(0, index - n // 2), info.frame_count - n)
    return start, start + n


def _seconds(info: Any, start: int, stop: int) -> tuple[float, float]:
    pts = info.pts
    t0 = float((pts[start] - pts[0]) * info.time_base)
    last = pts[stop - 1] - pts[0]
    step = (pts[stop - 1] - pts[stop - 2]) if stop >= 2 else 1
    t1 = float((last + step) * info.time_base)
    return t0, max(t1, t0 + 1e-3)


Variant = tuple[str, str, Mapping[str, str]]  #: (style, preset, sets)


@dataclass
class _Window:
    """What the variants of one window share, measured once: the decoded input (pre-roll first), the
    stabiliser's motion between neighbours and the metrics' input flow (None at a window's first frame).
    Both are functions of the input alone, and they were half the cost of a variant."""

    start: int
    frames: list[Any]  # core.video.reader.Frame, pre-roll included
    motions: list[Any]
    pairs: list[Any]
    cut_scores: list[float]  # histogram distance to the previous frame; each variant's preset sets the threshold


def _shared(path: str | Path, index: int, span: float, roll: int) -> tuple[Any, _Window]:
    from core.presets import TemporalConfig
    from core.quality.metrics import input_flow, input_grey
    from core.render.temporal import Stabiliser, frame_features
    from core.video.cuts import CutDetector
    from core.video.flow import FlowEstimator
    from core.video.probe import probe
    from core.video.reader import Reader

    info = probe(path)
    start, stop = window(info, index, span)
    roll = min(roll, start)
    with Reader(info) as reader:
        frames = list(reader.frames(start - roll, stop))
    if not frames:
        raise ConfigError(f"{path}: no frame could be decoded between frames {start} and {stop}")
    size = frames[0].rgb.shape[:2]

    def motions() -> list[Any]:
        mover = Stabiliser(TemporalConfig(mode="flow"))
        feats = [frame_features(f.rgb, True) for f in frames]
        return [None] + [mover.motion_between(a, b, size) for a, b in itertools.pairwise(feats)]

    def pairs() -> list[Any]:
        """The input flow into each measured frame (MEASURE: every other one), None elsewhere."""
        est = FlowEstimator(MEASURE.flow_preset)
        greys = [input_grey(f.rgb, MEASURE) if f.index >= start - 1 else None for f in frames]
        return [None] + [input_flow(est, ga, gb) if ga is not None and b.index % MEASURE.every == 0 else None
                         for (ga, gb), b in zip(itertools.pairwise(greys), frames[1:], strict=True)]

    def cut_scores() -> list[float]:
        detector = CutDetector(0.0)
        return [detector.distance(f.rgb) for f in frames]

    with ThreadPoolExecutor(2, thread_name_prefix="lab-flow") as pool:
        fm, fp = pool.submit(motions), pool.submit(pairs)
        scores = cut_scores()  # on this thread: the pairs are done long before the motions
        return info, _Window(start, frames, fm.result(), fp.result(), scores)


def _analysis(path: str | Path, variant: Variant) -> tuple[Any, Any]:
    """The variant's job spec and its style's job-wide analysis (cached per clip, style and parameters)."""
    from core.render.preview import cached_analysis
    from core.render.spec import build_job

    style, preset, sets = variant
    spec = build_job(path, Path(path).with_suffix(".preview.mp4"), style, preset, dict(sets))
    return spec, cached_analysis(spec)


def _render(path: str | Path, index: int, variant: Variant, shared: _Window,
            fitted: tuple[Any, Any] | None = None) -> ClipVariant:
    """One variant over the shared window: stylised, stabilised with the shared motion (reset at the cuts its
    own preset's threshold finds), measured with the shared input flow. ``fitted``: its :func:`_analysis`, when
    made already."""
    from core.config import to_dict
    from core.quality.metrics import MetricsMeter
    from core.render.temporal import Stabiliser
    from stylizers import get_style

    _, preset, sets = variant
    spec, analysis = fitted if fitted is not None else _analysis(path, variant)
    cls = get_style(spec.style)
    stylizer = cls(spec.params, analysis.shared)
    temporal = spec.preset.temporal
    stab = Stabiliser(temporal, enabled=cls.stabilise)
    meter = MetricsMeter(MEASURE)
    sources, frames, records = [], [], []
    for frame, motion, pair, score in zip(shared.frames, shared.motions, shared.pairs, shared.cut_scores,
                                          strict=True):
        if score > temporal.cut_threshold:  # CutDetector.is_cut, measured once for both variants
            stab.reset()
            meter.reset()
            motion = None
        out = stab.apply(stylizer.stylize(frame.rgb, frame.index), motion if stab.needs_source else None)
        if frame.index >= shared.start:
            sources.append(frame.rgb)
            frames.append(out)
            rec = meter.update(frame.index, frame.rgb, out, pair=pair)
            if rec is not None:
                records.append(rec)
    params = to_dict(spec.params)
    model = str(params.get("model") or "") if "@" in str(params.get("model") or "") else ""
    return ClipVariant(spec.style, preset, dict(sets), params, model,
                       _seconds(analysis.info, shared.start, shared.start + len(frames)), sources, frames,
                       min(index - shared.start, len(frames) - 1), mean_metrics(records))


def render_window(path: str | Path, index: int, style: str, preset: str, sets: Mapping[str, str],
                  span: float = DEFAULT_SPAN) -> ClipVariant:
    """Render the ``span``-second window around frame ``index`` with these settings, stabilised as a render
    would, and measure it (every frame, temporal metrics between neighbours, reset at cuts)."""
    _, shared = _shared(path, index, span, PREROLL)
    return _render(path, index, (style, preset, sets), shared)


def render_pair(path: str | Path, index: int, a: Variant, b: Variant,
                span: float = DEFAULT_SPAN) -> tuple[ClipVariant, ClipVariant]:
    """Both variants ``(style, preset, sets)`` over the same window: the input decoded, its motion and flow
    measured once, then the two variants on two threads (decode, the styles' OpenCV work and the flow release
    the GIL)."""
    with ThreadPoolExecutor(2, thread_name_prefix="lab") as pool:
        # the styles' analyses (the cartoon palette: sample decodes and a k-means fit) beside the window's decode
        # and motion, which leave a core idle part of the time
        fits = [pool.submit(_analysis, path, v) for v in (a, b)]
        _, shared = _shared(path, index, span, PREROLL)
        fa, fb = (pool.submit(_render, path, index, v, shared, fit.result()) for v, fit in zip((a, b), fits,
                                                                                              strict=True))
        return fa.result(), fb.result()


def side_by_side(a: ClipVariant, b: ClipVariant, width: int = SHOW_WIDTH, gap: int = 8) -> bytes:
    """One H.264 MP4 (in memory) of A left and B right, each scaled to ``width`` px wide: one video, so the
    two play, pause and loop in sync, whatever the browser does."""
    import av

    h, w = a.frames[0].shape[:2]
    k = min(1.0, width / w)
    sw, sh = max(2, round(w * k) // 2 * 2), max(2, round(h * k) // 2 * 2)
    buf = io.BytesIO()
    fps = max(1, round(len(a.frames) / max(a.t_range[1] - a.t_range[0], 1e-3)))
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 2 * sw + gap, sh, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast", "movflags": "+faststart"}
        canvas = np.zeros((sh, 2 * sw + gap, 3), np.uint8)
        for fa, fb in zip(a.frames, b.frames, strict=False):
            canvas[:, :sw] = cv2.resize(fa, (sw, sh), interpolation=cv2.INTER_AREA)
            canvas[:, sw + gap:] = cv2.resize(fb, (sw, sh), interpolation=cv2.INTER_AREA)
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def record_pair(clip: str | Path, a: ClipVariant, b: ClipVariant, *, choice: str, rater: str,
                rating: int | None = None, comment: str = "", db_path: str | Path | None = None) -> int:
    """Store a judgement made on the two clips (core.learn.feedback.record_ab): the time range, each side's
    offered frame and the window's metrics, temporal ones included. Returns the record id."""
    from core.learn.feedback import Variant, record_ab

    if a.t_range != b.t_range:
        raise ConfigError(f"{clip}: A and B cover different windows ({a.t_range} vs {b.t_range})")
    va, vb = (Variant(style=v.style, params=v.params, model=v.model, metrics=v.metrics or None) for v in (a, b))
    return record_ab(str(clip), a.t_range, va, vb, a.rgb, b.rgb, a.sources[a.middle], choice=choice, rater=rater,
                     rating=rating, comment=comment, db_path=db_path)
