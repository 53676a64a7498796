"""Export a :class:`~trainer.model.TransformerNet` to ONNX, and refuse a file that does not compute what torch does.

The deployed graph is :class:`~trainer.model.Exportable` (output clamped to [0, 1]) in eval mode, opset 17,
with one input ``"input"`` and one output ``"output"``, both (N, 3, H, W) float32 RGB in [0, 1], where N, H
and W are symbolic: one file serves every frame size, odd ones included. Beside it goes the sidecar
``<model>.json`` ``{"range": 1}`` that tells :mod:`core.ml.session` the model takes 0..1 pixels.

Why a parity check: the legacy (TorchScript-tracing) exporter records one run of the network. Anything
that run turned into a Python number (a ``float(tensor)``, a shape used in arithmetic, a data-dependent
``if``) is frozen into the graph as a constant and silently wrong on every other input or size. So the
exported file is run in ONNX Runtime (CPU) on seeded random inputs at sizes *other* than the traced one
(one of them odd) and compared with torch; above ``tol`` it is refused with :class:`ParityError` and
nothing is written. The model (and its sidecar) are published by atomic rename only after every check.

torch 2.13's default exporter is the dynamo one, which needs ``onnxscript`` (not a dependency): this
module uses the legacy exporter (``dynamo=False``) and keeps its deprecation and tracer warnings local.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from core.atomic import atomic_path, write_json
from core.errors import ConfigError, ModelError, OutputError

from .model import Exportable, TransformerNet, parameter_count

OPSET = 17
INPUT, OUTPUT = "input", "output"
#: (H, W) the exporter traces with: deliberately none of the check sizes, so a traced-in size shows up.
TRACE_SIZE = (64, 72)
DEFAULT_CHECK_SIZES = ((96, 128), (61, 87))
_DYNAMIC = {0: "N", 2: "H", 3: "W"}


class ParityError(ModelError):
    """The exported ONNX graph does not compute what the torch network computes (beyond the tolerance).

    Not the user's fault: the network uses something the tracer cannot record (see the module docstring).
    ``tracer_warnings``: what the tracer said while recording, the usual lead to the cause (some are
    benign: instance norm's size check always warns).
    """

    def __init__(self, message: str, tracer_warnings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.tracer_warnings = tracer_warnings


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote and checked.

    ``max_abs_error``: ((H, W), largest |torch - ONNX Runtime| over the output, on the 0..1 scale) per
    checked size, in the order checked. ``tol``: the bound they were held to. ``parameters``: the
    network's parameter count. ``file_bytes``: size of the .onnx file. ``sidecar``: the range JSON.
    """

    path: Path
    sidecar: Path
    max_abs_error: tuple[tuple[tuple[int, int], float], ...]
    tol: float
    parameters: int
    file_bytes: int
    opset: int = OPSET
    tracer_warnings: tuple[str, ...] = field(default=())


def sidecar_path(model: Path) -> Path:
    """Where :func:`core.ml.session.sidecar_range` looks for a model's range: ``<model>.json``."""
    return model.with_suffix(".json")


def export(net: TransformerNet, path: Path | str, *, check_sizes: Sequence[tuple[int, int]] = DEFAULT_CHECK_SIZES,
           tol: float = 1e-4) -> ExportReport:
    """Export ``net`` (clamped, eval mode, dynamic N/H/W) to ``path`` with its ``{"range": 1}`` sidecar.

    ``check_sizes``: (H, W) pairs at which ONNX Runtime must match torch within ``tol`` (max abs error on
    the 0..1 output scale); include an odd one. The caller's ``net`` keeps its training/eval mode.
    Raises ConfigError (bad sizes or tol), OutputError (no such folder), ModelError (the graph fails
    ``onnx.checker`` or cannot be loaded), ParityError (torch and ONNX Runtime disagree). On any error
    nothing is left at ``path`` or beside it.
    """
    path = Path(path)
    sizes = _check_args(path, check_sizes, tol)
    was_training = net.training
    net.eval()
    try:
        with atomic_path(path) as tmp:
            caught = _trace_export(Exportable(net), tmp)
            try:
                onnx.checker.check_model(str(tmp), full_check=True)
            except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
                raise ModelError(f"model {path}: exported graph fails onnx.checker: {exc}") from None
            errors = _parity(net, tmp, path, sizes, tol, caught)
            # the sidecar goes first: a model published without it would be read as 0..255
            side = sidecar_path(path)
            write_json(side, {"range": 1})
    finally:
        net.train(was_training)
    return ExportReport(path=path, sidecar=side, max_abs_error=errors, tol=tol, parameters=parameter_count(net),
                        file_bytes=path.stat().st_size, tracer_warnings=caught)


def _check_args(path: Path, check_sizes: Sequence[tuple[int, int]], tol: float) -> tuple[tuple[int, int], ...]:
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {path.parent} does not exist")
    if path.suffix != ".onnx":
        raise ConfigError(f"{path}: expected a .onnx file name, got suffix {path.suffix!r}")
    sizes = []
    for size in check_sizes:
        ok = isinstance(size, tuple | list) and len(size) == 2 and all(isinstance(v, int) and v >= 8 for v in size)
        if not ok:
            raise ConfigError(f"{path}: check_sizes expects (H, W) pairs of ints >= 8, got {size!r}")
        sizes.append((int(size[0]), int(size[1])))
    if not sizes:
        raise ConfigError(f"{path}: check_sizes is empty: an unchecked export is not offered")
    if not (isinstance(tol, int | float) and tol >= 0 and np.isfinite(tol)):
        raise ConfigError(f"{path}: tol must be a finite number >= 0, got {tol!r}")
    return tuple(sizes)


def _trace_export(model: Exportable, tmp: Path) -> tuple[str, ...]:
    """Legacy export of ``model`` to ``tmp``; the tracer's warnings are returned, not printed."""
    example = torch.from_numpy(_seeded_input(TRACE_SIZE, seed=0))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: _DYNAMIC, OUTPUT: _DYNAMIC})
    return tuple(dict.fromkeys(str(w.message).splitlines()[0] for w in seen
                               if issubclass(w.category, torch.jit.TracerWarning)))


def _parity(net: TransformerNet, onnx_path: Path, final: Path, sizes: tuple[tuple[int, int], ...], tol: float,
            tracer_warnings: tuple[str, ...]) -> tuple[tuple[tuple[int, int], float], ...]:
    """Max |torch - ORT| per size; raises ParityError at the first size above ``tol``."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's pybind error types
        raise ModelError(f"model {final}: ONNX Runtime cannot load the exported graph: {exc}") from None
    model = Exportable(net)
    errors = []
    for i, (h, w) in enumerate(sizes, start=1):
        x = _seeded_input((h, w), seed=i)
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        got = sess.run([OUTPUT], {INPUT: x})[0]
        if got.shape != want.shape:
            raise ParityError(f"model {final}: at {h}x{w} ONNX Runtime returns shape {got.shape}, torch {want.shape}")
        err = float(np.max(np.abs(got - want)))
        if not err <= tol:  # also refuses NaN
            raise ParityError(f"model {final}: ONNX Runtime differs from torch at {h}x{w} (HxW) by max abs "
                              f"error {err:.3g} > tol {tol:g} on the 0..1 scale; not written "
                              f"({len(tracer_warnings)} distinct tracer warning(s))", tracer_warnings)
        errors.append(((h, w), err))
    return tuple(errors)


def _seeded_input(size: tuple[int, int], seed: int) -> np.ndarray:
    """(1, 3, H, W) float32 uniform in [0, 1), reproducible from ``seed``."""
    return np.random.default_rng(seed).random((1, 3, *size), dtype=np.float32)
