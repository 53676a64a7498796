"""What the pages' buttons do, each one call into core after the checks a page must not skip.

No streamlit here: these are plain functions, tested like the rest of the studio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError

#: job states whose files must survive a clean-up
ACTIVE_STATES = ("queued", "running", "paused")


def queue_render(queue: Any, input: str | Path, style: str, preset: str, sets: Mapping[str, str] | None = None,
                 *, output: str | Path | None = None, chunk_seconds: float | None = None,
                 workers: int | None = None, folder: str | Path | None = None, ext: str = ".mp4") -> int:
    """Add a render to ``queue`` (a :class:`core.studio.queue.JobQueue`, which checks the style, preset, every
    ``--set`` and the paths as ``render`` would) after the disk guard; returns the job id. ``output``
    defaults to a new ``<name>_<style><ext>`` in ``folder`` (one of the studio's output folders, default
    renders/), never the name of an earlier render or of a job still to finish. Raises the queue's
    ConfigError / MediaNotFoundError / OutputError, and :class:`core.errors.DiskFullError`."""
    from core.studio import storage

    if output is not None:
        out = Path(output)
    else:
        unfinished = queue.list(["queued", "running", "paused"])
        out = storage.render_path(input, style, ext, folder, taken=[j.spec["output"] for j in unfinished
                                                                    if j.kind == "render"])
        out.parent.mkdir(parents=True, exist_ok=True)
    storage.check_free_space(out.parent, 2 * storage.input_size(input))  # the output and its chunks, roughly
    return int(queue.add("render", {"input": str(input), "output": str(out), "style": style, "preset": preset,
                                    "sets": {str(k): str(v) for k, v in (sets or {}).items()},
                                    "chunk_seconds": chunk_seconds, "workers": workers}))


def queue_train(queue: Any, pairs: str | Path, base: str, *, epochs: int, lr: float, patience: int = 4,
                name: str | None = None, description: str = "", int8: str = "no", gpu: bool = False) -> int:
    """Add a fine-tuning job (kind ``train``) to ``queue``; returns its id. The spec's keys are the CLI's
    ``train`` options (``name`` None: the trainer derives ``<base>-ft-<n>``). ConfigError when the pair
    folder holds no pairs or a value is out of range."""
    folder = Path(pairs)
    if not (folder / "inputs").is_dir() or not any((folder / "inputs").glob("*.png")):
        raise ConfigError(f"{folder}: no approved pairs yet (approve outputs in the Style Lab first)")
    if not 1 <= int(epochs) <= 1000:
        raise ConfigError(f"epochs: expected 1..1000, got {epochs}")
    if not 0 < float(lr) <= 1:
        raise ConfigError(f"learning rate: expected a number in (0, 1], got {lr}")
    if int8 not in ("no", "try", "require"):
        raise ConfigError(f"int8: expected no, try or require, got {int8!r}")
    return int(queue.add("train", {"pairs": str(folder), "base": base, "name": name or None,
                                   "description": description.strip(), "epochs": int(epochs), "lr": float(lr),
                                   "patience": int(patience), "int8": int8}, gpu=gpu))


def in_use_paths(queue: Any) -> list[Path]:
    """Inputs and outputs of jobs still queued, running or paused (a clean-up must leave them)."""
    paths = []
    for job in queue.list(states=ACTIVE_STATES):
        for key in ("input", "output", "pairs"):
            if job.spec.get(key):
                paths.append(Path(job.spec[key]))
    return paths


# ---------------------------------------------------------------------------------------------- frames


def frame_seconds(info: Any, index: int) -> float:
    """The time (s from the clip's start) that :meth:`core.video.reader.Reader.frame_at` maps to frame ``index``:
    the middle of the frame, so rounding cannot land on its neighbour."""
    pts = info.pts
    if not 0 <= index < len(pts):
        raise ConfigError(f"{info.path}: frame {index} is outside the clip (0 .. {len(pts) - 1})")
    nxt = pts[index + 1] if index + 1 < len(pts) else pts[index] + (pts[index] - pts[index - 1] if index else 1)
    t = (Fraction(pts[index] - pts[0]) + Fraction(nxt - pts[index], 2)) * info.time_base
    return min(float(t), float(info.duration))


def source_frame(path: str | Path, seconds: float) -> np.ndarray:
    """The input frame shown at ``seconds``, as (H, W, 3) uint8 RGB (what a preview stylizes)."""
    from core.video.probe import probe
    from core.video.reader import Reader

    with Reader(probe(path)) as r:
        return r.frame_at(seconds).rgb


def frame_metrics(inp: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Single-frame metrics of a stylized frame against its input (temporal ones need two frames)."""
    from core.quality.metrics import MetricsMeter

    rec = MetricsMeter().update(0, inp, out)
    return {k: v for k, v in rec.to_json().items() if k != "index" and v is not None} if rec else {}


@dataclass(frozen=True)
class Rendered:
    """One rendered Style Lab variant: what it is and its pixels."""

    style: str
    preset: str
    sets: dict[str, str]
    params: dict[str, Any]
    model: str
    rgb: np.ndarray
    metrics: dict[str, float]


def render_variant(path: str | Path, seconds: float, style: str, preset: str, sets: Mapping[str, str],
                   source: np.ndarray | None = None) -> Rendered:
    """Stylize the frame at ``seconds`` as a render with these settings would (core.render.preview.preview_frame)."""
    from core.config import to_dict
    from core.render.preview import preview_frame
    from core.render.spec import build_job

    spec = build_job(path, Path(path).with_suffix(".preview.mp4"), style, preset, dict(sets))
    rgb = preview_frame(spec, seconds)
    params = to_dict(spec.params)
    model = str(params.get("model") or "") if "@" in str(params.get("model") or "") else ""
    metrics = frame_metrics(source, rgb) if source is not None and source.shape == rgb.shape else {}
    return Rendered(style, preset, dict(sets), params, model, rgb, metrics)


def record_rating(clip: str | Path, index: int, a: Rendered, b: Rendered, source: np.ndarray, *, choice: str,
                  rater: str, rating: int | None, comment: str) -> int:
    """Store an A/B judgement of frame ``index`` (core.learn.feedback.record_ab); returns the record id."""
    from core.learn.feedback import Variant, record_ab

    va, vb = (Variant(style=r.style, params=r.params, model=r.model, metrics=r.metrics or None) for r in (a, b))
    return record_ab(str(clip), int(index), va, vb, a.rgb, b.rgb, source, choice=choice, rater=rater,
                     rating=rating, comment=comment)


def propose_pair(clip: str | Path, style: str, preset: str, budget: int) -> dict[str, Any]:
    """The pair the auto-tuner thinks most worth rating next (core.learn.autotune): with a fitted preference
    model, the two candidates it is least sure about; without one, the best candidate by the metrics
    against the base parameters. ``{"a": {param: value}, "b": {...}, "p_a": float | None}``."""
    from core.learn.autotune import TuneConfig, tune
    from core.learn.preference import PreferenceModel, default_path

    model = PreferenceModel.load() if default_path().is_file() else None
    result = tune(clip, style, budget, preset=preset, model=model, config=TuneConfig(frames=2, warmup=1),
                  pairs=1 if model is not None else 0)
    if result.pairs:
        pair = result.pairs[0]
        return {"a": dict(pair.a.point), "b": dict(pair.b.point), "p_a": pair.p_a}
    best = next((c for c in result.candidates if c.feasible and c.point != result.base.point), None)
    if best is None:  # offering the base against itself would waste a rating
        reasons = sorted({c.reason for c in result.candidates if c.reason})[:3]
        raise ConfigError(f"{clip}: none of {len(result.candidates)} {style} candidates keeps the style's floors "
                          f"while flickering less ({'; '.join(reasons) or 'no reason recorded'}); try a larger budget")
    return {"a": dict(best.point), "b": dict(result.base.point), "p_a": None}
