"""The model card of a fine-tuned model: what it was trained on, what it looks like, how it scored, why it
runs in the precision it does.

A fine-tune is its own model: it has its own name and its look is not its base's, so it gets its own card
(Markdown, like the bundled ``models/<name>.md``), written beside its ONNX file as ``v<N>.md`` when it is
registered (see :func:`core.ml.registry.register`'s ``card``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.ml.registry import ModelEntry

from .export_onnx import ExportReport
from .finetune import FinetuneConfig, FinetuneResult, HeldOutScores
from .quantize import Int8Decision


@dataclass(frozen=True)
class CardFacts:
    """Everything a card states that the registry entry does not (the entry gives name, version, base)."""

    description: str
    pairs_dir: Path
    pair_count: int
    held_out: tuple[str, ...]
    data_hash: str
    cfg: FinetuneConfig
    run: FinetuneResult
    export: ExportReport
    before: HeldOutScores
    after: HeldOutScores
    int8: Int8Decision | None
    fps: float
    clips: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  #: (trained on, held out) when split by clip


def _where(f: CardFacts) -> str:
    trained, held = f.clips
    if held:
        return f"held out by clip: {', '.join(held)}, never trained on (trained on {', '.join(trained)})"
    return ("held out: frames of the clip(s) it trained on (the pairs name fewer than two clips in groups.json: "
            "pairs approved from a second clip measure how the look carries to new footage)")


def _scores(s: HeldOutScores) -> str:
    return f"PSNR {s.psnr_db:.2f} dB, SSIM {s.ssim:.3f}"


def card_text(entry: ModelEntry, f: CardFacts) -> str:
    """The card of ``entry`` as Markdown (one title line, then one fact a line)."""
    base = (entry.lineage or {}).get("base", "?")
    run, cfg = f.run, f.cfg
    precision = "fp32 (int8 not tried)" if f.int8 is None else f"{f.int8.precision}: {f.int8.reason}"
    lines = [
        f"# {entry.spec}: {f.description or '(no description given)'}",
        "",
        f"- look: {f.description or '(no description given: pass --description)'}",
        f"- fine-tuned from `{base}` (a model of its own: `{base}` is unchanged)",
        f"- data: {f.pair_count} pairs from `{f.pairs_dir}` (data hash {f.data_hash}); "
        f"{f.pair_count - len(f.held_out)} trained on, {len(f.held_out)} held out: {', '.join(f.held_out)}",
        f"- {_where(f)}",
        f"- training: AdamW lr {cfg.lr:g}, batch {cfg.batch}, crop {cfg.crop}, {run.epochs_run} epochs"
        f"{' (early stop)' if run.stopped_early else ''}, seed {cfg.seed}, "
        f"loss L1 + {cfg.loss.edge:g} Sobel + {cfg.loss.temporal:g} temporal, frames scaled {cfg.scale_min:g}-1",
        f"- held-out pairs vs their targets ({f.after.pairs} whole frame{'s' if f.after.pairs != 1 else ''}): "
        f"base `{base}` {_scores(f.before)}"
        f" -> this model {_scores(f.after)}",
        f"- validation loss {run.best_val:.4f} (from {run.first_val:.4f} with the base's weights)",
        f"- export parity (torch vs ONNX Runtime): max error {max(e for _, e in f.export.max_abs_error):.1e}",
        f"- precision {precision}",
        f"- speed: {f.fps:.2f} fps at 1280x720 on the machine that trained it",
        f"- created {entry.created}; licence: {entry.licence or 'unknown'}",
    ]
    return "\n".join(lines) + "\n"
