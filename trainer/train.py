"""From approved pairs to a candidate model: fine-tune, export, check, (quantise), register it for review.

Each step can refuse, and a refusal registers nothing: export parity above 1e-4 (ParityError), an int8
model that does not pay (QualityGateError). int8 is registered only when its PSNR vs fp32 is at least
``min_psnr`` dB *and* it runs at least ``MIN_SPEEDUP`` times as fast as fp32 on this machine; with
``int8="try"`` the fp32 model is registered instead and its card says why, with the figures.

A fine-tune's look is not its base's, so it is registered under its own name (default ``<base>-ft-<n>``,
the first n free; the base's own name only when the caller gives it) with its own card (:mod:`.card`): the
pairs, the look (the caller's description), the base's and the fine-tune's scores on the held-out pairs,
the int8 decision. The registered version carries its lineage (base model, data hash, epochs, best
validation loss), the fps measured at 1280x720 on this machine, and its trainable weights (``.npz``), so
it can itself be the base of the next fine-tune.

It is registered as a *candidate* (:func:`core.ml.registry.register_candidate`), whatever its gates say: a
render of ``model=<name>`` keeps its active version until a person has compared the two (the review record,
:mod:`.review`, the Trainer page) and activated it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.errors import ConfigError
from core.ml import registry
from core.paths import studio_home

from .card import CardFacts, card_text
from .dataset import Pair, data_hash, load_pairs, split
from .export_onnx import ExportReport, export
from .finetune import (
    EpochFn,
    FinetuneConfig,
    FinetuneResult,
    HeldOutScores,
    StepFn,
    finetune,
    load_best,
    score_held_out,
)
from .model import ARCHS
from .quantize import (
    MIN_SPEEDUP,
    Int8Decision,
    QualityGateError,
    QuantReport,
    decide_int8,
    measure_speedup,
    quantize_int8,
)
from .review import record
from .weights import base_network, save_npz

Int8 = Literal["no", "try", "require"]
FPS_SIZE = (720, 1280)


@dataclass(frozen=True)
class TrainReport:
    """``entry``: the registered candidate; ``int8``: the precision decision and its figures (None with
    ``int8="no"``); ``before`` / ``after``: the base's and the fine-tune's scores on the held-out pairs;
    ``card``: the registered model card; ``review``: the review record written beside it (:mod:`.review`)."""

    entry: registry.ModelEntry
    run: FinetuneResult
    export: ExportReport
    quant: QuantReport | None
    int8: Int8Decision | None
    fps: float
    before: HeldOutScores
    after: HeldOutScores
    card: str
    review: dict[str, Any]


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


def default_name(base: str) -> str:
    """The name a fine-tune of ``base`` (``name`` or ``name@version``) gets when none is given:
    ``<base name>-ft-<n>``, the first n not registered yet. A fine-tune of ``sketch-ft-1`` is ``sketch-ft-2``
    (not ``sketch-ft-1-ft-1``). Never the base's own name: a fine-tune's look is another one."""
    stem = re.sub(r"-ft-\d+$", "", base.partition("@")[0])
    taken = {e.name for e in registry.list_models(candidates=True)}
    n = 1
    while f"{stem}-ft-{n}" in taken:
        n += 1
    return f"{stem}-ft-{n}"


def train_model(pairs_dir: str | Path, base: str, name: str | None, cfg: FinetuneConfig, *,
                folder: str | Path | None = None, resume: bool = False, int8: Int8 = "no", min_psnr: float = 32.0,
                min_speedup: float = MIN_SPEEDUP, calibration: Sequence[np.ndarray] = (), description: str = "",
                licence: str = "", on_step: StepFn | None = None, on_epoch: EpochFn | None = None) -> TrainReport:
    """Fine-tune ``base`` (a registered model trained here, or "compact"/"johnson" from scratch) on the
    pairs in ``pairs_dir``, then register the result, with its card and review record, as the next version
    of ``name`` (default: :func:`default_name`; from scratch a name is required), a candidate: the name's
    active version is unchanged until someone activates it. ``description``: the look, in the user's words
    (the card's title and the registry's style). ``calibration``: extra (H, W, 3) uint8 frames for int8
    calibration (the pair inputs are used too). ``int8="require"`` raises QualityGateError where ``"try"``
    would register fp32."""
    pairs = load_pairs(pairs_dir)
    if base in ARCHS and not name:
        raise ConfigError(f"training from scratch needs --name for the new model (base {base!r} is an architecture)")
    if name is not None:
        registry.check_name(name, "--name")
    net, lineage_base = base_network(base, cfg.seed)
    name = name or default_name(lineage_base)
    held_out = split(pairs, cfg.val_fraction)[1]
    before = score_held_out(net, held_out)
    folder = Path(folder) if folder else run_folder(name)
    run = finetune(net, pairs, folder, cfg, resume=resume, on_step=on_step, on_epoch=on_epoch)
    best = load_best(run)
    after = score_held_out(best, held_out)

    out = folder / "export"
    out.mkdir(exist_ok=True)
    report = export(best, out / f"{name}.onnx")
    save_npz(best, out / f"{name}.npz")
    chosen, quant, decision = report.path, None, None
    if int8 != "no":
        quant, decision = _int8(report.path, out / f"{name}.int8.onnx", pairs, calibration, min_psnr, min_speedup)
        if decision.precision != "int8" and int8 == "require":
            raise QualityGateError(f"--int8 require: {decision.reason}; nothing registered", psnr_db=decision.psnr_db)
        if decision.precision == "int8" and quant is not None:
            chosen = quant.path
            (out / f"{name}.int8.npz").write_bytes((out / f"{name}.npz").read_bytes())
    fps = measure_fps(chosen)
    held_groups = {p.group for p in held_out}
    clips = ((), ()) if len({p.group for p in pairs if p.group}) < 2 else (
        tuple(sorted({p.group for p in pairs} - held_groups)), tuple(sorted(held_groups)))
    facts = CardFacts(description=description.strip(), pairs_dir=Path(pairs_dir).absolute(), pair_count=len(pairs),
                      held_out=tuple(p.stem for p in held_out), data_hash=data_hash(pairs_dir), cfg=cfg, run=run,
                      export=report, before=before, after=after, int8=decision, fps=fps, clips=clips)
    cards: list[str] = []

    def card(entry: registry.ModelEntry) -> str:
        cards.append(card_text(entry, facts))
        return cards[-1]

    review = record(facts, lineage_base)
    entry = registry.register_candidate(
        chosen, name, card=card, review=review,
        style=description.strip() or f"neural, fine-tuned from {lineage_base}",
        licence=licence or "trained by this studio on the user's own pairs",
        input={"layout": "NCHW", "range": 1, "size": None, "precision": "int8" if chosen != report.path else "fp32"},
        lineage={"base": lineage_base, "data_hash": facts.data_hash, "epochs": run.epochs_run,
                 "val_loss": round(run.best_val, 6)},
        measured_fps=fps)
    return TrainReport(entry, run, report, quant, decision, fps, before, after, cards[-1], review)


def _int8(fp32: Path, out: Path, pairs: Sequence[Pair], calibration: Sequence[np.ndarray], min_psnr: float,
          min_speedup: float) -> tuple[QuantReport | None, Int8Decision]:
    """Quantise, then time int8 against fp32 (only when the PSNR gate passed) and decide."""
    try:
        quant = quantize_int8(fp32, out, [p.input for p in pairs] + list(calibration), min_psnr=min_psnr)
    except QualityGateError as exc:
        return None, decide_int8(exc.psnr_db, None, min_psnr=min_psnr, min_speedup=min_speedup)
    speedup = measure_speedup(fp32, quant.path)
    return quant, decide_int8(quant.psnr_db, speedup, min_psnr=min_psnr, min_speedup=min_speedup)
