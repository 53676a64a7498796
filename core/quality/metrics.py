"""Quality metrics of a stylised video against its input: how much content it keeps, how it looks, how
steady it is.

Per frame, on a copy downscaled so the longer side is :attr:`MetricsConfig.long_side` (the metrics are
for comparing renders, and a 320 px copy keeps them to a few ms a frame):

- ``ssim``: SSIM of input and output (scikit-image, on grey, 7x7 window): content kept, 1 = identical.
- ``mse``: mean squared difference of input and output, RGB on the 0..1 scale.
- ``edge_coherence``: Pearson correlation of the input's and output's gradient magnitudes (Sobel on grey):
  1 = edges in the same places with proportional strength, ~0 = unrelated; insensitive to polarity, so
  inked outlines and pencil strokes count as agreeing with the input's edges.
- ``sharpness``: variance of the Laplacian of the output's grey (0..255 scale, at the metric size).
- ``colourfulness``: Hasler and Suesstrunk (2003) on the output's RGB (0..255 scale): ~0 grey, ~100 vivid.

Temporal, between output frames t-1 and t of one shot (None on a shot's first frame):

- ``temporal_ssim``: SSIM of consecutive output frames (grey).
- ``warping_error`` (Lai et al. 2018, "Learning Blind Video Temporal Consistency"): output t-1 is warped
  onto t along the optical flow of the *input* frames (OpenCV DIS, :mod:`core.video.flow`), pixels whose flow
  fails the forward-backward check (occluded or revealed) are masked out, and the squared difference is
  averaged over the remaining pixels and the 3 channels, on the 0..1 scale. (Lai et al.'s code sums the
  channels: their figures are 3x ours.) A static clip scores 0; flicker raises it; motion does not.
- ``flat_flicker``: the mean absolute change of the output's grey (0..255) between t-1 and t over the pixels
  where the input is flat and still (its grey moved at most :data:`FLAT_STILL` levels and its gradient is
  under :data:`FLAT_GRADIENT`): boiling in skies and walls, the flicker people notice first, which the
  warping error averages in with everything else. None where under 1 % of the frame is flat and still.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.errors import ConfigError, UnsupportedVideoError
from core.video.flow import PRESETS, FlowEstimator, FlowPair, backward_warp, flow_to_previous
from core.video.frames import check_rgb, gray


@dataclass(frozen=True)
class MetricsConfig:
    """How the metrics sample a video.

    ``long_side``: frames are downscaled (area filter) so the longer side is this; 0 = full size.
    ``every``: measure every N-th frame (index % every == 0); the frame before a measured one is still
    downscaled and kept (but not measured), so temporal metrics exist for every measured frame.
    ``flow_preset``: :data:`core.video.flow.PRESETS` name of the DIS optical flow for the warping error.
    """

    long_side: int = 320
    every: int = 1
    flow_preset: str = "fast"

    def __post_init__(self) -> None:
        if not isinstance(self.long_side, int) or self.long_side < 0 or 0 < self.long_side < 16:
            raise ConfigError(f"metrics long_side: expected 0 (full size) or an integer >= 16, got {self.long_side!r}")
        if not isinstance(self.every, int) or self.every < 1:
            raise ConfigError(f"metrics every: expected an integer >= 1, got {self.every!r}")
        if self.flow_preset not in PRESETS:
            raise ConfigError(f"metrics flow_preset: expected one of {sorted(PRESETS)}, got {self.flow_preset!r}")


@dataclass(frozen=True)
class FrameMetrics:
    """The metrics of one output frame (see the module docstring for each one's definition and range)."""

    index: int
    ssim: float
    mse: float
    edge_coherence: float
    sharpness: float
    colourfulness: float
    temporal_ssim: float | None = None
    warping_error: float | None = None
    flat_flicker: float | None = None

    def to_json(self) -> dict:
        """A JSON-ready dict; floats keep 6 significant digits."""
        return {k: v if v is None or isinstance(v, int) else float(f"{v:.6g}") for k, v in asdict(self).items()}


#: the metric fields of :class:`FrameMetrics` (everything but ``index``), in order
METRIC_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FrameMetrics) if f.name != "index")


# ---------------------------------------------------------------------------------------------- pure functions


def downscale(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """(H, W, C) uint8 -> the same with the longer side ``long_side`` (area filter); as is when 0 or smaller."""
    h, w = rgb.shape[:2]
    if long_side <= 0 or max(h, w) <= long_side:
        return rgb
    k = long_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


class SsimTo:
    """SSIM of candidates against one reference image (float32 grey, 0..255), the reference's statistics kept
    (the stabiliser's neural hold scores several blends of each frame). scikit-image's
    ``structural_similarity`` with its defaults (7x7 uniform window, sample covariance, the 3-pixel border
    left out) in a few OpenCV box filters: a third of its time and none of its ~0.3 s of imports (scipy),
    which every render worker paid; the two agree to 1e-6 (float32 rounding, both)."""

    _C1, _C2, _WIN = (0.01 * 255) ** 2, (0.03 * 255) ** 2, (7, 7)
    _COV = 49 / 48  # sample covariance, as scikit-image

    def __init__(self, ref: np.ndarray) -> None:
        self.ref = ref
        self.mu = cv2.blur(ref, self._WIN, borderType=cv2.BORDER_REFLECT)
        self.var = (cv2.blur(ref * ref, self._WIN, borderType=cv2.BORDER_REFLECT) - self.mu * self.mu) * self._COV

    def __call__(self, x: np.ndarray) -> float:
        mu = cv2.blur(x, self._WIN, borderType=cv2.BORDER_REFLECT)
        var = (cv2.blur(x * x, self._WIN, borderType=cv2.BORDER_REFLECT) - mu * mu) * self._COV
        cov = (cv2.blur(x * self.ref, self._WIN, borderType=cv2.BORDER_REFLECT) - mu * self.mu) * self._COV
        num = (2 * mu * self.mu + self._C1) * (2 * cov + self._C2)
        den = (mu * mu + self.mu * self.mu + self._C1) * (var + self.var + self._C2)
        return float((num / den)[3:-3, 3:-3].mean())


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two images of one size: (H, W) grey or (H, W, 3) uint8 RGB (compared as grey, BT.601 luma);
    float grey is on the 0..255 scale. 7x7 uniform window, as scikit-image (:class:`SsimTo`); 1.0 when
    identical."""
    ga, gb = (_grey32(x) for x in (a, b))
    if ga.shape != gb.shape:
        raise ValueError(f"ssim: images differ in size, {ga.shape} vs {gb.shape}")
    if min(ga.shape) < 7:
        raise ValueError(f"ssim: images must be at least 7x7, got {ga.shape}")
    return SsimTo(gb)(ga)


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two (H, W, 3) uint8 RGB images on the 0..1 scale."""
    d = cv2.absdiff(a, b).astype(np.float32) * np.float32(1 / 255)
    return float(np.mean(d * d))


def gradient_magnitude(grey: np.ndarray) -> np.ndarray:
    """(H, W) grey (uint8, or float on 0..255) -> (H, W) float32 Sobel gradient magnitude."""
    g = _grey32(grey)
    return cv2.magnitude(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))


def edge_coherence(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (-1..1) of the gradient magnitudes of two images (RGB uint8 or grey).

    1.0 when identical; 1.0 when both are flat (no edges to disagree about); 0.0 when exactly one is flat.
    """
    # float64: a float32 dot product's last digits follow BLAS's threading (which varied between identical
    # renders here in the 6th decimal, what the metrics files keep)
    ma = gradient_magnitude(_grey32(a)).ravel().astype(np.float64)
    mb = gradient_magnitude(_grey32(b)).ravel().astype(np.float64)
    ma, mb = ma - ma.mean(), mb - mb.mean()
    na, nb = float(ma @ ma), float(mb @ mb)
    if na < 1e-6 or nb < 1e-6:
        return 1.0 if na < 1e-6 and nb < 1e-6 else 0.0
    return float(np.clip((ma @ mb) / math.sqrt(na * nb), -1.0, 1.0))


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (0..255 scale): higher = more fine detail."""
    return float(cv2.Laplacian(_grey32(rgb), cv2.CV_32F).var())


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler-Suesstrunk colourfulness of an (H, W, 3) uint8 RGB image: ``std + 0.3 * mean`` of the
    opponent channels rg = R - G and yb = (R + G) / 2 - B. 0 for grey; ~33 "moderately", ~59 "quite",
    ~82+ "highly" colourful on their scale."""
    f = rgb.astype(np.float32)
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    (m_rg, s_rg), (m_yb, s_yb) = cv2.meanStdDev(rg), cv2.meanStdDev(yb)
    std = math.hypot(float(s_rg[0, 0]), float(s_yb[0, 0]))
    mean = math.hypot(float(m_rg[0, 0]), float(m_yb[0, 0]))
    return std + 0.3 * mean


def warping_error(prev_out: np.ndarray, out: np.ndarray, pair: FlowPair) -> float | None:
    """Lai et al.'s warping error: output t-1 warped onto t along ``pair`` (from the *input* frames, see
    :func:`core.video.flow.flow_to_previous`), squared difference to output t averaged over the pixels
    ``pair.reliable`` keeps and over the channels, 0..1 scale. ``prev_out``, ``out``: (H, W, 3) uint8 RGB
    of the flow's size. None when no pixel is reliable."""
    keep = pair.reliable
    n = int(np.count_nonzero(keep))
    if n == 0:
        return None
    warped = backward_warp(prev_out, pair.to_prev)
    d = cv2.absdiff(warped, out)[keep].astype(np.float32) * np.float32(1 / 255)
    return float(np.mean(d * d))


#: an input pixel is still when its grey moved at most this many levels (0..255) since the last frame
FLAT_STILL = 2.0
#: and flat when its Sobel gradient magnitude (0..255 grey, 3x3, /8) is under this
FLAT_GRADIENT = 2.0


def flat_flicker(prev_in: np.ndarray, cur_in: np.ndarray, prev_out: np.ndarray, cur_out: np.ndarray) -> float | None:
    """Mean |output t - output t-1| (grey, 0..255) where the input is flat and still; greys of one size
    (uint8 or float32 on 0..255). None when under 1 % of the pixels qualify."""
    a, b = _grey32(prev_in), _grey32(cur_in)
    flat = cv2.magnitude(cv2.Sobel(b, cv2.CV_32F, 1, 0), cv2.Sobel(b, cv2.CV_32F, 0, 1)) * np.float32(1 / 8)
    keep = (cv2.absdiff(a, b) <= FLAT_STILL) & (flat < FLAT_GRADIENT)
    if np.count_nonzero(keep) < 0.01 * keep.size:
        return None
    return float(cv2.absdiff(_grey32(prev_out), _grey32(cur_out))[keep].mean())


def _grey32(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = gray(img)
    return img if img.dtype == np.float32 else img.astype(np.float32)


# ---------------------------------------------------------------------------------------------- the meter


@dataclass(frozen=True)
class _Kept:
    """What the next frame's temporal metrics need of this one, at the metric size."""

    index: int
    in_grey: np.ndarray  # (h, w) uint8
    out_rgb: np.ndarray  # (h, w, 3) uint8
    out_grey: np.ndarray  # (h, w) float32


class MetricsMeter:
    """Measures one frame sequence (a clip, a chunk, a worker's share): call :meth:`update` per frame in
    order, :meth:`reset` at a scene cut. Inputs are never modified.

    Temporal metrics need frame t-1: when sampling skips t-1, it is still downscaled and kept (no metric),
    and a gap in the indices (or a reset) gives the next frame None for them.
    """

    def __init__(self, cfg: MetricsConfig = MetricsConfig()) -> None:
        self.cfg = cfg
        self._flow = FlowEstimator(cfg.flow_preset)
        self._prev: _Kept | None = None

    def reset(self) -> None:
        """Forget the previous frame: no temporal metric across a scene cut."""
        self._prev = None

    def state_dict(self) -> dict[str, Any]:
        """The kept frame (arrays and its index), so a chunk can go on where another stopped."""
        k = self._prev
        return {} if k is None else {"index": np.array(k.index), "in_grey": k.in_grey, "out_rgb": k.out_rgb,
                                     "out_grey": k.out_grey}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._prev = None if "index" not in state else _Kept(int(state["index"]), np.asarray(state["in_grey"]),
                                                              np.asarray(state["out_rgb"]),
                                                              np.asarray(state["out_grey"]))

    def update(self, index: int, inp: np.ndarray, out: np.ndarray, pair: FlowPair | None = None, *,
               small_in: np.ndarray | None = None) -> FrameMetrics | None:
        """Metrics of output frame ``index`` against its input, both (H, W, 3) uint8 RGB of one size.

        ``pair``: the input's flow from frame ``index - 1`` (:func:`input_flow`), when the caller measured it
        already: several renders of the same input (the Style Lab's two variants) share it. None when
        sampling skips the frame. ``small_in``: ``downscale(inp, cfg.long_side)`` when the caller has it (the
        renderer's cut signature is taken from the same copy); another size is ignored. Raises ValueError on
        frames of different sizes.
        """
        check_rgb(inp, "metrics input frame")
        check_rgb(out, "metrics output frame")
        if inp.shape != out.shape:
            raise ValueError(f"metrics: frame {index}: input {inp.shape[:2]} and output {out.shape[:2]} differ in size")
        every = self.cfg.every
        measure, keep = index % every == 0, (index + 1) % every == 0
        if not (measure or keep):
            self._prev = None
            return None
        small_out = downscale(out, self.cfg.long_side)
        if small_in is None or small_in.shape != small_out.shape:
            small_in = downscale(inp, self.cfg.long_side)
        cur = _Kept(index, gray(small_in), small_out, _grey32(small_out))
        prev, self._prev = self._prev, (cur if keep else None)
        if not measure:
            return None
        temporal_ssim = warp_err = flat = None
        if prev is not None and prev.index == index - 1 and prev.out_rgb.shape == small_out.shape:
            temporal_ssim = ssim(prev.out_grey, cur.out_grey)
            if pair is None or pair.to_prev.shape[:2] != cur.in_grey.shape:
                pair = flow_to_previous(self._flow, prev.in_grey, cur.in_grey)
            warp_err = warping_error(prev.out_rgb, small_out, pair)
            flat = flat_flicker(prev.in_grey, cur.in_grey, prev.out_grey, cur.out_grey)
        in_grey = _grey32(small_in)
        return FrameMetrics(
            index=index,
            ssim=ssim(in_grey, cur.out_grey),
            mse=mse(small_in, small_out),
            edge_coherence=edge_coherence(in_grey, cur.out_grey),
            sharpness=sharpness(cur.out_grey),
            colourfulness=colourfulness(small_out),
            temporal_ssim=temporal_ssim,
            warping_error=warp_err,
            flat_flicker=flat,
        )


def mean_metrics(records: Sequence[FrameMetrics]) -> dict[str, float]:
    """Each metric's mean over the records that have it; a metric none has, or one with a non-finite value
    (which the feedback store refuses), is left out."""
    out = {}
    for name in METRIC_NAMES:
        vals = [getattr(r, name) for r in records if getattr(r, name) is not None]
        if vals and all(math.isfinite(v) for v in vals):
            out[name] = float(np.mean(vals))
    return out


def input_grey(inp: np.ndarray, cfg: MetricsConfig = MetricsConfig()) -> np.ndarray:
    """The grey copy of an input frame that :class:`MetricsMeter` measures its flow on."""
    return gray(downscale(inp, cfg.long_side))


def input_flow(estimator: FlowEstimator, prev_grey: np.ndarray, cur_grey: np.ndarray) -> FlowPair:
    """The input's flow between two :func:`input_grey` copies, as :meth:`MetricsMeter.update` takes it."""
    return flow_to_previous(estimator, prev_grey, cur_grey)


# ---------------------------------------------------------------------------------------------- summaries


def _stats(records: Sequence[FrameMetrics], how: Callable[[np.ndarray], float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in METRIC_NAMES:
        vals = [getattr(r, name) for r in records if getattr(r, name) is not None]
        out[name] = float(f"{how(np.asarray(vals, np.float64)):.6g}") if vals else None
    return out


def mean_warping_error(inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray], cuts: Sequence[int] = ()) -> float:
    """Mean warping error of ``outputs`` over a sequence of frames with their ``inputs`` (RGB uint8), the meter
    reset at the ``cuts`` (frame indices) as a render resets it: how a stabiliser is judged against per-frame
    output in the tests and the benchmark."""
    meter, errs, at = MetricsMeter(), [], set(cuts)
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        if i in at:
            meter.reset()
        e = meter.update(i, a, b).warping_error
        if e is not None:
            errs.append(e)
    return float(np.mean(errs))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two (H, W, 3) uint8 RGB images (capped at 100 for identical ones)."""
    return 10.0 * math.log10(1.0 / max(mse(a, b), 1e-10))


@dataclass(frozen=True)
class Fidelity:
    """How a student (a distilled model) renders frames against its teacher: PSNR to the teacher's frames
    (mean and worst), and its sharpness (variance of the Laplacian) over the teacher's and over the input's,
    the median of the per-frame ratios (a blurred copy of a teacher scores well on PSNR alone)."""

    frames: int
    psnr_mean: float
    psnr_min: float
    sharpness_vs_teacher: float
    sharpness_vs_input: float

    def line(self) -> str:
        return (f"{self.frames} frames: PSNR to the teacher {self.psnr_mean:.2f} dB (worst {self.psnr_min:.2f}), "
                f"sharpness {self.sharpness_vs_teacher:.2f}x the teacher's, {self.sharpness_vs_input:.2f}x the "
                "input's")


def fidelity(inputs: Sequence[np.ndarray], teacher: Sequence[np.ndarray], student: Sequence[np.ndarray]) -> Fidelity:
    """:class:`Fidelity` of ``student`` frames against ``teacher`` frames made from the same ``inputs``."""
    ps = [psnr(t, s) for t, s in zip(teacher, student, strict=True)]
    sharp = [(sharpness(i), sharpness(t), sharpness(s)) for i, t, s in zip(inputs, teacher, student, strict=True)]
    return Fidelity(len(ps), float(np.mean(ps)), float(np.min(ps)),
                    float(np.median([s / max(t, 1e-6) for _, t, s in sharp])),
                    float(np.median([s / max(i, 1e-6) for i, _, s in sharp])))


def summarize(records: Sequence[FrameMetrics], cuts: Sequence[int] = ()) -> dict:
    """``{"frames", "mean": {...}, "p95": {...}, "shots": [{"start", "end", "frames", "mean": {...}}]}``.

    Each metric's mean and 95th percentile over the records that have it (None when none does). Shots
    are split at ``cuts`` (the indices of each new shot's first frame); ``end`` is exclusive, and the
    last shot ends after the last record. Shots without a measured frame are left out.
    """
    recs = sorted(records, key=lambda r: r.index)
    last = recs[-1].index + 1 if recs else 0
    starts = sorted({0, *(c for c in cuts if 0 < c < last)})
    shots = []
    for start, end in zip(starts, [*starts[1:], last], strict=True):
        inside = [r for r in recs if start <= r.index < end]
        if inside:
            shots.append({"start": start, "end": end, "frames": len(inside), "mean": _stats(inside, np.mean)})
    return {"frames": len(recs), "mean": _stats(recs, np.mean),
            "p95": _stats(recs, lambda v: np.percentile(v, 95)), "shots": shots}


def compare_videos(inp: Path, out: Path, cfg: MetricsConfig = MetricsConfig(),
                   on_progress: Callable[[int, int], None] | None = None) -> tuple[list[FrameMetrics], dict]:
    """Measure the video ``out`` against ``inp``, frame by frame -> (records, :func:`summarize` of them).

    Scene cuts are found on the input with :class:`core.video.cuts.CutDetector` (the render's own default
    threshold); temporal metrics restart at each. An output padded to even sizes (as renders of odd-sized
    inputs are) is cropped back; any other size is resized to the input's. ``on_progress(done, total)``
    after each frame. Raises :class:`UnsupportedVideoError` when the frame counts differ.
    """
    from core.presets import TemporalConfig
    from core.video.cuts import CutDetector
    from core.video.probe import probe
    from core.video.reader import Reader

    info_in, info_out = probe(inp), probe(out)
    if info_in.frame_count != info_out.frame_count:
        raise UnsupportedVideoError(f"{out}: {info_out.frame_count} frames, but {inp} has {info_in.frame_count}; "
                                    "metrics compare frame by frame")
    meter, cuts = MetricsMeter(cfg), CutDetector(TemporalConfig().cut_threshold)
    records: list[FrameMetrics] = []
    cut_indices: list[int] = []
    total = info_in.frame_count
    with Reader(info_in) as ra, Reader(info_out) as rb:
        for a, b in zip(ra.frames(), rb.frames(), strict=True):
            if cuts.is_cut(a.rgb) and a.index > 0:
                meter.reset()
                cut_indices.append(a.index)
            rec = meter.update(a.index, a.rgb, _match_size(b.rgb, a.rgb.shape))
            if rec is not None:
                records.append(rec)
            if on_progress:
                on_progress(a.index + 1, total)
    return records, summarize(records, cut_indices)


def _match_size(rgb: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    h, w = shape[:2]
    if rgb.shape[:2] == (h, w):
        return rgb
    if rgb.shape[0] - h in (0, 1) and rgb.shape[1] - w in (0, 1):
        return np.ascontiguousarray(rgb[:h, :w])
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def write_jsonl(records: Sequence[FrameMetrics], path: Path) -> Path:
    """Write one JSON object per record, atomically."""
    from core import atomic

    text = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    atomic.write_bytes(Path(path), text.encode())
    return Path(path)


__all__ = ["METRIC_NAMES", "FrameMetrics", "MetricsConfig", "MetricsMeter", "colourfulness", "compare_videos",
           "downscale", "edge_coherence", "mse", "sharpness", "ssim", "summarize", "warping_error",
           "write_jsonl"]
