"""A candidate's review: what a person looks at before a fine-tune renders anything by name.

The trainer registers every fine-tune as a candidate (:func:`core.ml.registry.register_candidate`) with a
review record beside it (``v<N>.review.json``, :func:`record`): the held-out pairs, the base's and the
candidate's scores on them, and the figures of its gates. Here those become what the Trainer page shows:
the gates as rows (:func:`gates`), the scores side by side (:func:`scores`), and sample frames of the held-out
pairs run through the version a bare name renders with today and through the candidate (:func:`samples`),
so "activate" is a decision made on pictures and numbers, not on a training run having finished.

Torch-free (the Trainer page imports it; the record is built from the trainer's plain figures).

``first_val`` and the epoch-1 validation loss are the same loss (:func:`trainer.losses.fidelity`, L1 plus
edges) on the same centre crops of the held-out pairs; ``first_val`` is taken on the base's weights before
the first step, epoch 1's after one epoch of steps (see :class:`trainer.finetune.FinetuneResult`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from core.errors import ConfigError
from core.ml import registry
from core.video.frames import to_float, to_uint8
from core.video.stills import IMAGE_EXTS, read_image

if TYPE_CHECKING:
    from .card import CardFacts

FORMAT = 1
#: the long side of a sample frame, in pixels: enough to judge a look, cheap enough to run on a CPU
SAMPLE_SIDE = 256


@dataclass(frozen=True)
class Gate:
    """One row of the gates table: the figure measured, the bound it is held to, and the verdict
    (``"pass"``, ``"fail"``, ``"not tried"``, or ``"info"`` for a figure with no bound)."""

    gate: str
    value: str
    threshold: str
    result: str


@dataclass(frozen=True)
class Sample:
    """One held-out pair at most :data:`SAMPLE_SIDE` px: (H, W, 3) uint8 RGB each; ``reference`` is the
    compared version's output (None when there is none to compare with)."""

    stem: str
    input: np.ndarray
    reference: np.ndarray | None
    candidate: np.ndarray
    target: np.ndarray


def record(f: CardFacts, base: str) -> dict[str, Any]:
    """The review record of a training run (JSON-able), written beside the candidate by the registry."""
    history = f.run.history
    best = min(history, key=lambda r: r.val_loss) if history else None
    return {
        "format": FORMAT, "base": base, "pairs": str(f.pairs_dir), "pair_count": f.pair_count,
        "held_out": list(f.held_out), "data_hash": f.data_hash,
        "scores": {"pairs": f.after.pairs, "base": {"psnr_db": f.before.psnr_db, "ssim": f.before.ssim},
                   "model": {"psnr_db": f.after.psnr_db, "ssim": f.after.ssim}},
        "validation": {"first_val": f.run.first_val, "epoch1_val": history[0].val_loss if history else None,
                       "best_val": f.run.best_val, "best_epoch": best.epoch if best else None,
                       "epochs_run": f.run.epochs_run, "stopped_early": f.run.stopped_early},
        "parity": {"max_abs_error": max(e for _, e in f.export.max_abs_error), "tol": f.export.tol},
        "int8": None if f.int8 is None else f.int8.to_json(),
        "fps": f.fps,
    }


def load(entry: registry.ModelEntry) -> dict[str, Any] | None:
    """``entry``'s review record; None for a version registered without one (a download, an older fine-tune)."""
    path = entry.review_path
    if path is None:
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable review record ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: expected a review record of format {FORMAT}, got {str(data)[:80]!r}")
    return data


def reference(entry: registry.ModelEntry) -> registry.ModelEntry | None:
    """What a candidate is compared with: the version its name renders with today, else (a new name) the
    registered version it was fine-tuned from; None when neither exists (trained from scratch)."""
    current = registry.info(entry.name)
    if current.active is not None:
        return current.active_entry
    base = (entry.lineage or {}).get("base", "")
    return registry.entry(base) if "@" in base and registry.is_registered(base) else None


def gates(rec: dict[str, Any], reference_fps: tuple[str, float | None] | None = None) -> list[Gate]:
    """The gates of a review record as rows: parity, int8, speed, validation, held-out pairs.
    ``reference_fps``: (spec, measured fps) of the compared version, shown beside the candidate's speed."""
    parity, val, sc = rec["parity"], rec["validation"], rec["scores"]
    rows = [Gate("parity (torch vs ONNX Runtime)", f"max error {parity['max_abs_error']:.1e}",
                 f"≤ {parity['tol']:g}", _verdict(parity["max_abs_error"] <= parity["tol"]))]
    q = rec.get("int8")
    if q is None:
        rows.append(Gate("int8", "not tried (fp32)", "—", "not tried"))
    else:
        psnr = "PSNR not measured" if q["psnr_db"] is None else f"{q['psnr_db']:.1f} dB vs fp32"
        speed = "speed not measured" if q["speedup"] is None else f"{q['speedup']:.2f}x fp32 speed"
        rows.append(Gate("int8", f"{psnr}, {speed}: registered {q['precision']}",
                         f"≥ {q['min_psnr']:g} dB and ≥ {q['min_speedup']:g}x", _verdict(q["precision"] == "int8")))
    compared = "" if reference_fps is None or reference_fps[1] is None else \
        f"{reference_fps[0]}: {reference_fps[1]:.2f} fps"
    rows.append(Gate("speed (1280x720, this machine)", f"{rec['fps']:.2f} fps", compared or "—", "info"))
    first, best, epoch1 = val["first_val"], val["best_val"], val.get("epoch1_val")
    seen = f"best {best:.4f} (epoch {val['best_epoch']})" + \
        (f", epoch 1 {epoch1:.4f}" if epoch1 is not None and val["best_epoch"] != 1 else "")
    rows.append(Gate("validation loss", seen, f"< {first:.4f} (the base's weights, before training)",
                     _verdict(best < first)))
    base, model = sc["base"], sc["model"]
    rows.append(Gate(f"held-out pairs ({sc['pairs']}, whole frames)", f"PSNR {_db(model['psnr_db'])}, "
                     f"SSIM {model['ssim']:.3f}", f"≥ the base's PSNR {_db(base['psnr_db'])}",
                     _verdict(model["psnr_db"] >= base["psnr_db"])))
    return rows


def first_val_note(rec: dict[str, Any]) -> str:
    """One line saying what ``first_val`` is next to epoch 1's validation loss, with this run's figures."""
    val = rec["validation"]
    epoch1 = val.get("epoch1_val")
    line = (f"first_val {val['first_val']:.4f} is the validation loss of the base's own weights ({rec['base']}), "
            "measured before the first step; ")
    if epoch1 is not None:
        line += f"epoch 1's {epoch1:.4f} is after one epoch of steps; "
    line += ("both are the same loss (L1 + edges) on the same centre crops of the held-out pairs, so the "
             "fine-tune beat its base only where the best epoch is lower")
    if epoch1 is not None and epoch1 > val["first_val"]:
        line += " (here the first steps moved it away from the pairs: AdamW moves every weight by about the " \
                "learning rate at first)"
    return line + "."


def scores(rec: dict[str, Any], candidate: str) -> list[dict[str, str]]:
    """The held-out scores, base vs candidate, as table rows."""
    sc = rec["scores"]
    base, model = sc["base"], sc["model"]
    return [{"held-out pairs": "PSNR (dB)", f"base {rec['base']}": _db(base["psnr_db"], unit=""),
             f"candidate {candidate}": _db(model["psnr_db"], unit="")},
            {"held-out pairs": "SSIM", f"base {rec['base']}": f"{base['ssim']:.3f}",
             f"candidate {candidate}": f"{model['ssim']:.3f}"}]


def samples(rec: dict[str, Any], candidate: str, compared: str | None, count: int = 3,
            side: int = SAMPLE_SIDE) -> list[Sample]:
    """Up to ``count`` held-out pairs of the record, at most ``side`` px, run through ``compared`` (a spec;
    None: no reference column) and ``candidate`` as a render runs a registered model (checksum-verified
    file, its declared input convention, tiled ONNX Runtime session). Pairs whose files are gone are
    skipped; an empty list when none is left."""
    pairs = [p for p in (_pair(Path(rec["pairs"]), stem) for stem in rec["held_out"]) if p is not None][:count]
    if not pairs:
        return []
    out = []
    for stem, rgb, target in pairs:
        small = _fit(rgb, side)
        out.append(Sample(stem, small, None if compared is None else _run(compared, small), _run(candidate, small),
                          _fit(target, side)))
    return out


def _run(spec: str, rgb: np.ndarray) -> np.ndarray:
    from core.ml import session as ml_session

    model = ml_session.get_session(registry.resolve(spec), declared=registry.entry(spec).convention)
    return to_uint8(ml_session.run_tiled_batch(model, [to_float(rgb)])[0])


def _pair(folder: Path, stem: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    found = [next((p for p in (folder / sub / f"{stem}{ext}" for ext in IMAGE_EXTS) if p.is_file()), None)
             for sub in ("inputs", "targets")]
    if None in found:
        return None
    return stem, read_image(found[0]), read_image(found[1])


def _fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """At most ``side`` px on the long side (area filter), a new array either way."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb.copy()
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _verdict(ok: bool) -> str:
    return "pass" if ok else "fail"


def _db(value: float, unit: str = " dB") -> str:
    return "identical" if math.isinf(value) else f"{value:.2f}{unit}"
