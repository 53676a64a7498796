"""Static int8 quantisation of a style model, behind a quality gate.

ONNX Runtime's static quantisation (QDQ format, weights int8 per output channel, activations uint8, the
U8S8 combination ORT's x86 kernels are built for) needs activation ranges: they are calibrated by
running the fp32 model on frames from the user's own clips, because a style net's activations depend on
the content it sees. Then the gate: the int8 model must stay within ``min_psnr`` dB of the fp32 model's
output on frames held out from calibration, else it is refused with :class:`QualityGateError` and nothing
is written. A passing model is published by atomic rename, with the fp32 model's range sidecar.

Whether int8 is *faster* depends on the CPU and the graph (instance norm, reflection padding and resize
stay float and add quantise/dequantise pairs around them): it is measured, never assumed. A second gate,
:func:`measure_speedup` then :func:`decide_int8`, keeps an int8 model only when it is also at least
``MIN_SPEEDUP`` times as fast as fp32 on frames of a realistic size on this machine (an int8 model once
passed the PSNR gate and ran at 0.81x fp32). Every intermediate file lives in a temporary folder removed on
every path.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from core.atomic import atomic_path, write_json
from core.errors import ConfigError, ModelError, OutputError
from core.ml.session import read_spec, sidecar_range
from core.video.frames import check_rgb, hwc_to_nchw, to_float

#: One frame in HOLD_OUT_EVERY is kept out of calibration to judge the result (when there are enough).
HOLD_OUT_EVERY = 4


class QualityGateError(ModelError):
    """The int8 model's output is further from the fp32 model's than the caller's ``min_psnr`` allows.

    A user error (exit code 2): the threshold and the calibration frames are the user's to change.
    """

    user_error = True

    def __init__(self, message: str, psnr_db: float | None = None) -> None:
        super().__init__(message)
        self.psnr_db = psnr_db


@dataclass(frozen=True)
class QuantReport:
    """What :func:`quantize_int8` wrote and measured.

    ``psnr_db``: the worst held-out frame's PSNR of int8 vs fp32 output (peak 1.0 on the 0..1 scale,
    outputs clipped to it as the renderer does; inf when identical). ``min_psnr``: the gate it passed.
    ``calibration_frames`` / ``gate_frames``: how many frames calibrated / were judged (the same frames
    when fewer than HOLD_OUT_EVERY were given). Speed is not here: the gate frames are calibration-sized,
    not render-sized; :func:`measure_speedup` measures it.
    """

    path: Path
    sidecar: Path
    psnr_db: float
    min_psnr: float
    fp32_bytes: int
    int8_bytes: int
    calibration_frames: int
    gate_frames: int


class _Frames(CalibrationDataReader):
    """ORT's calibration reader over model-ready (1, 3, H, W) float32 batches, one per call."""

    def __init__(self, name: str, batches: Sequence[np.ndarray]) -> None:
        self._name = name
        self._it: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x}


def quantize_int8(fp32: Path | str, out: Path | str, calibration: Sequence[np.ndarray], *,
                  min_psnr: float = 32.0) -> QuantReport:
    """Quantise the ONNX model ``fp32`` to int8 at ``out`` (+ ``out``'s range sidecar), if it passes the gate.

    ``calibration``: (H, W, 3) uint8 RGB frames (the frame contract) from the clips the model will
    render; each becomes a batch of one in the model's value range (its sidecar: 0..1 or 0..255). Sizes
    may differ for a dynamic model; a fixed-size model needs frames of its size. With >= HOLD_OUT_EVERY
    frames, every HOLD_OUT_EVERY-th is held out of calibration and judges the result; else all do both.
    Raises ConfigError (no frames, bad min_psnr, out == fp32, wrong frame size), UnsupportedVideoError (a
    frame that is not (H, W, 3) uint8), OutputError (no such folder), ModelError (unreadable model, ORT
    failure), QualityGateError (worst gate-frame PSNR < min_psnr). On any error nothing is written.
    """
    fp32, out = Path(fp32), Path(out)
    _check_paths(fp32, out)
    if not (isinstance(min_psnr, int | float) and np.isfinite(min_psnr)):
        raise ConfigError(f"{out}: min_psnr must be a finite number of dB, got {min_psnr!r}")
    value_range = sidecar_range(fp32)
    fp32_sess = _session(fp32)
    spec = read_spec(fp32_sess, fp32, value_range)
    batches = _batches(calibration, spec.size, value_range, fp32)
    calib, gate = _split(batches)

    with tempfile.TemporaryDirectory(prefix="vp-quant-") as tmp_s:
        tmp = Path(tmp_s)
        pre = tmp / "pre.onnx"
        q8 = tmp / "int8.onnx"
        try:
            # folds the exporter's shape arithmetic (for the compact net 112 Constants and Reshape/Cast/Slice
            # chains feeding the reflection Pads) into initialisers, so the quantiser sees Pad/Conv/Relu/Add/
            # Resize only. ONNX's own shape inference suffices; the symbolic pass changes nothing here.
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            _quiet(quantize_static, str(pre), str(q8), _Frames(spec.name, calib), quant_format=QuantFormat.QDQ,
                   per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as exc:  # ORT / onnx raise assorted types; the model is the cause
            raise ModelError(f"model {fp32}: static int8 quantisation failed: {type(exc).__name__}: {exc}") from None
        int8_sess = _session(q8, name=out)
        worst = _judge(fp32_sess, int8_sess, spec.name, gate, value_range)
        if not worst >= min_psnr:
            raise QualityGateError(f"model {out}: int8 output is {worst:.2f} dB PSNR from the fp32 model {fp32.name} "
                                   f"on its worst of {len(gate)} held-out frame(s), below min_psnr {min_psnr:g} dB; "
                                   "not written (more representative calibration frames may help)", psnr_db=worst)
        side = out.with_suffix(".json")
        # sidecar first: a model published without it would be read with the default 0..255 range
        write_json(side, {"range": int(value_range)})
        with atomic_path(out) as part:
            shutil.copyfile(q8, part)
    return QuantReport(path=out, sidecar=side, psnr_db=worst, min_psnr=float(min_psnr),
                       fp32_bytes=fp32.stat().st_size, int8_bytes=out.stat().st_size, calibration_frames=len(calib),
                       gate_frames=len(gate))


def _check_paths(fp32: Path, out: Path) -> None:
    if not fp32.is_file():
        raise ModelError(f"model {fp32}: no such file")
    if out.suffix != ".onnx":
        raise ConfigError(f"{out}: expected a .onnx file name, got suffix {out.suffix!r}")
    if not out.parent.is_dir():
        raise OutputError(f"{out}: folder {out.parent} does not exist")
    if out.resolve() == fp32.resolve():
        raise ConfigError(f"{out}: the int8 output must not overwrite its fp32 source")


def _session(path: Path, name: Path | None = None) -> ort.InferenceSession:
    """A private CPU session (not core.ml.session's shared cache: these files are temporary)."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's pybind error types
        raise ModelError(f"model {name or path}: ONNX Runtime cannot load it: {exc}") from None


def _batches(frames: Sequence[np.ndarray], size: tuple[int, int] | None, value_range: float,
             model: Path) -> list[np.ndarray]:
    """uint8 frames -> (1, 3, H, W) float32 batches in the model's range; the frames are not modified."""
    if len(frames) == 0:
        raise ConfigError(f"model {model}: no calibration frames given; static quantisation needs a few")
    batches = []
    for i, rgb in enumerate(frames):
        check_rgb(rgb, what=f"calibration frame {i}")
        if size is not None and rgb.shape[:2] != size:
            raise ConfigError(f"model {model}: takes {size[0]}x{size[1]} (HxW) inputs, calibration frame {i} is "
                              f"{rgb.shape[0]}x{rgb.shape[1]}")
        batches.append(hwc_to_nchw(to_float(rgb)) * np.float32(value_range))
    return batches


def _split(batches: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(calibration, gate): every HOLD_OUT_EVERY-th batch judges; too few batches serve both."""
    if len(batches) < HOLD_OUT_EVERY:
        return batches, batches
    gate = batches[HOLD_OUT_EVERY - 1::HOLD_OUT_EVERY]
    calib = [b for i, b in enumerate(batches) if (i + 1) % HOLD_OUT_EVERY]
    return calib, gate


def _judge(fp32: ort.InferenceSession, int8: ort.InferenceSession, name: str, gate: list[np.ndarray],
           value_range: float) -> float:
    """The worst PSNR in dB of the int8 output vs the fp32 output over ``gate``."""
    worst = float("inf")
    for x in gate:
        a = fp32.run(None, {name: x})[0]
        b = int8.run(None, {name: x})[0]
        worst = min(worst, psnr(a / value_range, b / value_range))
    return worst


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float arrays on the 0..1 scale (clipped to it first, as rendered); inf if equal."""
    diff = np.clip(a.astype(np.float64), 0.0, 1.0) - np.clip(b.astype(np.float64), 0.0, 1.0)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _quiet(fn, *args, **kwargs):
    """Run ORT's quantiser with its INFO/WARNING chatter (pre-processing advice, ...) held back."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return fn(*args, **kwargs)
    finally:
        root.setLevel(level)


# ---------------------------------------------------------------------------------------------- the speed gate

#: int8 is kept only at this many times fp32's speed or more: below it, its small loss of quality buys too little.
MIN_SPEEDUP = 1.1
#: (H, W) of the frames the speed is measured on: a 720p frame, what the studio renders (calibration frames
#: are often small, where fixed per-run costs hide the convolutions' speed).
SPEED_SIZE = (720, 1280)
SPEED_ROUNDS = 5


@dataclass(frozen=True)
class Int8Decision:
    """Which precision a trained model is registered in, and the figures that decided it.

    ``precision``: "int8" or "fp32". ``psnr_db``: int8 vs fp32 output (worst held-out frame; None when the
    quantiser failed before judging). ``speedup``: median fp32 / median int8 seconds per frame at
    ``SPEED_SIZE`` (> 1: int8 is faster; None when not measured because the PSNR gate refused first).
    ``reason``: one sentence with those figures, for the model card and the CLI.
    """

    precision: str
    psnr_db: float | None
    min_psnr: float
    speedup: float | None
    min_speedup: float
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"precision": self.precision, "psnr_db": self.psnr_db, "min_psnr": self.min_psnr,
                "speedup": self.speedup, "min_speedup": self.min_speedup, "reason": self.reason}


def decide_int8(psnr_db: float | None, speedup: float | None, *, min_psnr: float = 32.0,
                min_speedup: float = MIN_SPEEDUP) -> Int8Decision:
    """int8 when it passes both gates (``psnr_db >= min_psnr`` and ``speedup >= min_speedup``), else fp32.

    A pure function of the measured figures, so the decision is testable without timing anything.
    """
    size = f"{SPEED_SIZE[1]}x{SPEED_SIZE[0]}"
    quality = "PSNR not measured" if psnr_db is None else f"{psnr_db:.1f} dB PSNR vs fp32 (gate {min_psnr:g} dB)"
    speed = ("speed not measured" if speedup is None
             else f"{speedup:.2f}x fp32 speed at {size} (gate {min_speedup:g}x)")
    if psnr_db is None or not psnr_db >= min_psnr:
        precision, why = "fp32", f"int8 refused for quality: {quality}; {speed}"
    elif speedup is None or not speedup >= min_speedup:
        precision, why = "fp32", f"int8 refused for speed: {speed}, at {quality}"
    else:
        precision, why = "int8", f"int8 kept: {speed}, at {quality}"
    return Int8Decision(precision, psnr_db, float(min_psnr), speedup, float(min_speedup), why)


def measure_speedup(fp32: Path | str, int8: Path | str, *, size: tuple[int, int] = SPEED_SIZE,
                    rounds: int = SPEED_ROUNDS, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median fp32 seconds per frame / median int8 seconds per frame (> 1: int8 is faster), on this machine.

    Both models run in this process on the provider the renderer would use (:mod:`core.ml.session`), one
    seeded frame of ``size`` (H, W), after one warm-up run each. Each round times one run of each, the
    order alternating between rounds, so a machine whose speed drifts (shared cores, turbo) slows both
    alike; medians shrug off a round hit by another process. Raises ModelError / BadModelError from the
    sessions, ConfigError for ``rounds < 1``.
    """
    from core.ml import session as ml_session

    if rounds < 1:
        raise ConfigError(f"measure_speedup: rounds must be >= 1, got {rounds!r}")
    sessions = {"fp32": ml_session.get_session(fp32), "int8": ml_session.get_session(int8)}
    x = {k: np.random.default_rng(0).random((1, 3, *size), dtype=np.float32) * np.float32(s.spec.value_range)
         for k, s in sessions.items()}
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for k, s in sessions.items():
        s.run(x[k])  # warm-up: the first run allocates
    for r in range(rounds):
        for k in ("fp32", "int8") if r % 2 == 0 else ("int8", "fp32"):
            t = clock()
            sessions[k].run(x[k])
            times[k].append(clock() - t)
    return statistics.median(times["fp32"]) / statistics.median(times["int8"])
