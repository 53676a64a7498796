"""From approved pairs to an active model version: fine-tune, export, check, (quantise), register.

Each step can refuse, and a refusal registers nothing: export parity above 1e-4 (ParityError), an int8
model below the PSNR gate (QualityGateError; with ``int8="try"`` the fp32 model is registered instead and
the report says why). The registered version carries its lineage (base model, data hash, epochs, best
validation loss), the fps measured at 1280x720 on this machine, and its trainable weights (``.npz``), so
it can itself be the base of the next fine-tune.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from core.errors import ConfigError
from core.ml import registry
from core.paths import studio_home

from .dataset import data_hash, load_pairs
from .export_onnx import ExportReport, export
from .finetune import EpochFn, FinetuneConfig, FinetuneResult, StepFn, finetune, load_best
from .quantize import QualityGateError, QuantReport, quantize_int8
from .weights import base_network, save_npz

Int8 = Literal["no", "try", "require"]
FPS_SIZE = (720, 1280)


@dataclass(frozen=True)
class TrainReport:
    entry: registry.ModelEntry
    run: FinetuneResult
    export: ExportReport
    quant: QuantReport | None
    int8_refused: str
    fps: float


def run_folder(name: str) -> Path:
    """Where a new run keeps its checkpoints and log: ``$VP_HOME/training/<name>-<UTC time>``."""
    return studio_home() / "training" / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"


def measure_fps(path: Path, size: tuple[int, int] = FPS_SIZE, runs: int = 2) -> float:
    """Frames per second of an ONNX model at ``size`` on the session's provider (best of ``runs``)."""
    from core.ml import session as ml_session

    session = ml_session.get_session(path)
    x = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32) * np.float32(session.spec.value_range)
    session.run(x)  # warm-up: first run allocates
    best = np.inf
    for _ in range(runs):
        t = time.perf_counter()
        session.run(x)
        best = min(best, time.perf_counter() - t)
    return round(1.0 / best, 3)


def train_model(pairs_dir: str | Path, base: str, name: str | None, cfg: FinetuneConfig, *,
                folder: str | Path | None = None, resume: bool = False, int8: Int8 = "no", min_psnr: float = 32.0,
                calibration: Sequence[np.ndarray] = (), activate: bool = True, style: str = "",
                licence: str = "", on_step: StepFn | None = None, on_epoch: EpochFn | None = None) -> TrainReport:
    """Fine-tune ``base`` (a registered model trained here, or "compact"/"johnson" from scratch) on the
    pairs in ``pairs_dir``, then register the result as the next version of ``name`` (default: the base's
    name). ``calibration``: extra (H, W, 3) uint8 frames for int8 calibration (the pair inputs are used
    too)."""
    pairs = load_pairs(pairs_dir)
    net, lineage_base = base_network(base, cfg.seed)
    name = name or lineage_base.partition("@")[0]
    if name in ("compact", "johnson") and base == name:
        raise ConfigError(f"training from scratch needs --name for the new model (base {base!r} is an architecture)")
    folder = Path(folder) if folder else run_folder(name)
    run = finetune(net, pairs, folder, cfg, resume=resume, on_step=on_step, on_epoch=on_epoch)
    best = load_best(run)

    out = folder / "export"
    out.mkdir(exist_ok=True)
    report = export(best, out / f"{name}.onnx")
    save_npz(best, out / f"{name}.npz")
    chosen, quant, refused = report.path, None, ""
    if int8 != "no":
        frames = [p.input for p in pairs] + list(calibration)
        try:
            quant = quantize_int8(report.path, out / f"{name}.int8.onnx", frames, min_psnr=min_psnr)
        except QualityGateError as exc:
            if int8 == "require":
                raise
            refused = str(exc)
        else:
            chosen = quant.path
            (out / f"{name}.int8.npz").write_bytes((out / f"{name}.npz").read_bytes())
    fps = measure_fps(chosen)
    entry = registry.register(
        chosen, name, activate=activate, style=style or f"neural, fine-tuned from {lineage_base}",
        licence=licence or "trained by this studio on the user's own pairs",
        input={"layout": "NCHW", "range": 1, "size": None, "precision": "int8" if quant and chosen == quant.path
               else "fp32"},
        lineage={"base": lineage_base, "data_hash": data_hash(pairs_dir), "epochs": run.epochs_run,
                 "val_loss": round(run.best_val, 6)},
        measured_fps=fps)
    return TrainReport(entry, run, report, quant, refused, fps)
