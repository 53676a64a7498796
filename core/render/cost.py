"""What a render costs: the history of past renders, per-style fits on it, and the ETA estimate.

Every render appends a :class:`RenderRecord` (size, frames, seconds, workers, the clip's difficulty); a
style's seconds per frame is fitted on its records, or measured once on synthetic frames while it has too
few (:class:`StyleCost`). The queue and the pages show :func:`estimate_seconds` before a job starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core import atomic
from core.errors import ConfigError
from core.paths import studio_home
from core.presets import TemporalConfig
from core.quality.shots import ClipAnalysis

log = logging.getLogger(__name__)


def history_path() -> Path:
    """The studio's render history: one JSON object per line, appended at the end of every render."""
    return studio_home() / "history" / "renders.jsonl"


@dataclass(frozen=True)
class RenderRecord:
    """One finished render. ``seconds`` is wall time with ``workers`` worker processes; ``scores`` the input's
    frame-weighted analysis summary (empty when it was not analysed); ``time`` ISO 8601 UTC."""

    style: str
    width: int
    height: int
    frames: int
    seconds: float
    workers: int
    scores: dict[str, float] = field(default_factory=dict)
    time: str = ""
    version: int = 1

    @property
    def difficulty(self) -> float | None:
        v = self.scores.get("difficulty_score")
        return None if v is None else float(v)

    @property
    def worker_seconds_per_frame(self) -> float:
        """Seconds one worker spends on one frame: what the cost model predicts (wall x workers / frames)."""
        return self.seconds * self.workers / self.frames

    @classmethod
    def from_json(cls, data: Any, where: str) -> RenderRecord:
        """A record from a decoded JSON object; ValueError naming ``where`` and the bad field otherwise."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            rec = cls(style=str(data["style"]), width=int(data["width"]), height=int(data["height"]),
                      frames=int(data["frames"]), seconds=float(data["seconds"]), workers=int(data["workers"]),
                      scores={str(k): float(v) for k, v in dict(data.get("scores") or {}).items()},
                      time=str(data.get("time", "")), version=int(data.get("version", 1)))
        except KeyError as exc:
            raise ValueError(f"{where}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: bad value ({exc})") from None
        _check_record(rec, where)
        return rec


def _check_record(rec: RenderRecord, where: str) -> None:
    for name in ("width", "height", "frames", "workers"):
        if getattr(rec, name) < 1:
            raise ValueError(f"{where}: {name} must be >= 1, got {getattr(rec, name)}")
    if not (rec.seconds > 0 and math.isfinite(rec.seconds)):
        raise ValueError(f"{where}: seconds must be a positive number, got {rec.seconds}")


def record_render(style: str, width: int, height: int, frames: int, seconds: float, workers: int,
                  analysis: ClipAnalysis | None = None, *, path: str | Path | None = None) -> RenderRecord:
    """Append one finished render to the history (:func:`history_path` unless ``path``) and return it.

    The line goes out in one ``write`` on an ``O_APPEND`` descriptor, so renders finishing at the same time
    never interleave their lines (POSIX appends are atomic for a single write to a local file). Raises
    ValueError for an impossible record (naming the field), OSError when the history cannot be written.
    """
    rec = RenderRecord(style=style, width=int(width), height=int(height), frames=int(frames), seconds=float(seconds),
                       workers=int(workers), scores=analysis.summary() if analysis is not None else {},
                       time=datetime.now(UTC).isoformat(timespec="seconds"))
    _check_record(rec, "record_render")
    target = Path(path) if path is not None else history_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(asdict(rec), sort_keys=True, separators=(",", ":")) + "\n").encode()
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{target}: short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    return rec


def read_history(path: str | Path | None = None) -> list[RenderRecord]:
    """Every readable record of the history (missing file: none). A torn or malformed line (a crash mid-
    write, a hand edit) is skipped with a warning naming the file and line: an ETA must not fail a render."""
    target = Path(path) if path is not None else history_path()
    try:
        text = target.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(RenderRecord.from_json(json.loads(line), f"{target}:{no}"))
        except json.JSONDecodeError as exc:
            log.warning("%s:%d: not JSON (%s); skipped", target, no, exc.msg)
        except ValueError as exc:
            log.warning("%s; skipped", exc)
    return out


#: Records of one style needed before its fitted model is trusted over the measured constant.
MIN_RECORDS = 3


#: Difficulty assumed for a record or estimate with no analysis (the middle of the "medium" class).
_DEFAULT_DIFFICULTY = 0.375


@dataclass(frozen=True)
class StyleFit:
    """``worker seconds per frame = a * megapixels * (1 + b * difficulty)``, fitted on ``records`` renders.

    ``a`` > 0 (seconds per megapixel-frame of an easiest shot), ``b`` >= 0; ``rel_error`` is the median
    absolute relative error of the fit on its own records; ``difficulty`` the records' mean difficulty
    (used when an estimate has no analysis).
    """

    style: str
    a: float
    b: float
    records: int
    rel_error: float
    difficulty: float

    def seconds_per_frame(self, width: int, height: int, difficulty: float | None = None) -> float:
        d = self.difficulty if difficulty is None else difficulty
        return self.a * (width * height / 1e6) * (1.0 + self.b * d)


def fit_style(style: str, records: Iterable[RenderRecord]) -> StyleFit:
    """Least squares of ``y = a * P + c * P * d`` (``P`` megapixels, ``d`` difficulty, ``y`` worker seconds
    per frame), then ``b = c / a``. A negative or unidentifiable ``c`` (all records equally difficult)
    falls back to ``b = 0`` and the one-parameter fit ``a = sum(yP) / sum(P^2)``. ValueError without records."""
    recs = [r for r in records if r.style == style]
    if not recs:
        raise ValueError(f"fit_style: no records for style {style!r}")
    p = np.array([r.width * r.height / 1e6 for r in recs])
    d = np.array([_DEFAULT_DIFFICULTY if r.difficulty is None else r.difficulty for r in recs])
    y = np.array([r.worker_seconds_per_frame for r in recs])
    a, b = float((y * p).sum() / (p * p).sum()), 0.0
    design = np.stack([p, p * d], axis=1)
    if len(recs) >= 2:
        (a2, c2), _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
        if rank == 2 and a2 > 0 and c2 >= 0:
            a, b = float(a2), float(c2 / a2)
    pred = a * p * (1 + b * d)
    rel = float(np.median(np.abs(pred - y) / y))
    return StyleFit(style=style, a=a, b=b, records=len(recs), rel_error=rel, difficulty=float(d.mean()))


def style_costs_path() -> Path:
    """Where :func:`measure_style_cost` results are kept (JSON, written atomically)."""
    return studio_home() / "history" / "style_costs.json"


@dataclass(frozen=True)
class StyleCost:
    """A measured constant: one worker's CPU seconds per frame for ``style`` at ``width`` x ``height``
    (stylize + the default temporal stage on synthetic frames; decode and encode are not in it, so it is a
    lower bound)."""

    style: str
    seconds_per_frame: float
    width: int
    height: int
    frames: int
    measured: str

    def scaled(self, width: int, height: int) -> float:
        """Seconds per frame at another size, assuming cost proportional to pixels."""
        return self.seconds_per_frame * (width * height) / (self.width * self.height)


def measure_style_cost(style: str, size: tuple[int, int] = (1280, 720), *, frames: int = 4,
                       params: Any = None) -> StyleCost:
    """Stylize ``frames`` synthetic frames of ``size`` (w, h) with one thread and time them (CPU seconds).

    The style's job-wide analysis runs first, untimed, as a render's does; one warm-up frame is not timed.
    Raises ConfigError for an unknown style, or one that needs something (a model) that ``params`` lack.
    """
    from core.video.synthetic import ClipSpec, scene_frame
    from stylizers import build_params, get_style

    from .temporal import Stabiliser

    cls = get_style(style)
    if params is None:
        if cls.requires:
            raise ConfigError(f"measure_style_cost: style {style!r} needs {cls.requires}; pass params")
        params = build_params(style, None, {}, f"measure_style_cost({style})")
    w, h = size
    spec = ClipSpec(width=w, height=h, frames=frames + 1)
    imgs = [scene_frame(spec, i) for i in range(frames + 1)]
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # one render worker's cost (workers run OpenCV single-threaded)
    try:
        stylizer = cls(params, cls.analyze(params, imgs[: max(1, cls.analysis_samples)]))
        stab = Stabiliser(TemporalConfig(), enabled=cls.stabilise)
        stab(stylizer.stylize(imgs[0], 0), imgs[0])
        t0 = time.process_time()
        for i, img in enumerate(imgs[1:], 1):
            stab(stylizer.stylize(img, i), img)
        spent = time.process_time() - t0
    finally:
        cv2.setNumThreads(threads)
    return StyleCost(style=style, seconds_per_frame=spent / frames, width=w, height=h, frames=frames,
                     measured=datetime.now(UTC).isoformat(timespec="seconds"))


def read_style_costs(path: str | Path | None = None) -> dict[str, StyleCost]:
    """The measured constants kept so far (missing or unreadable file: none, with a warning if unreadable)."""
    target = Path(path) if path is not None else style_costs_path()
    try:
        data = json.loads(target.read_text())
        return {k: StyleCost(**v) for k, v in data.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError) as exc:
        log.warning("%s: unreadable style costs (%s); they will be measured again", target, exc)
        return {}


def _save_style_cost(cost: StyleCost, path: Path) -> None:
    costs = read_style_costs(path)
    costs[cost.style] = cost
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, {k: asdict(v) for k, v in costs.items()})


@dataclass(frozen=True)
class CostModel:
    """Seconds per frame for a style and size: the style's fit on past renders when it has at least
    ``min_records`` of them, else its measured constant (measured on first need and kept)."""

    fits: dict[str, StyleFit]
    min_records: int = MIN_RECORDS

    @classmethod
    def fit(cls, records: Iterable[RenderRecord], min_records: int = MIN_RECORDS) -> CostModel:
        recs = list(records)
        styles = sorted({r.style for r in recs})
        return cls({s: fit_style(s, recs) for s in styles}, min_records)

    @classmethod
    def load(cls, path: str | Path | None = None, min_records: int = MIN_RECORDS) -> CostModel:
        """Fitted on the studio's history (:func:`history_path` unless ``path``)."""
        return cls.fit(read_history(path), min_records)

    def seconds_per_frame(self, style: str, width: int, height: int, difficulty: float | None = None, *,
                          costs_path: str | Path | None = None) -> tuple[float, str]:
        """(one worker's seconds per frame, "history" or "measured"). May measure the style (about a second)."""
        fit = self.fits.get(style)
        if fit is not None and fit.records >= self.min_records:
            return fit.seconds_per_frame(width, height, difficulty), "history"
        target = Path(costs_path) if costs_path is not None else style_costs_path()
        cost = read_style_costs(target).get(style)
        if cost is None:
            cost = measure_style_cost(style)
            with contextlib.suppress(OSError):  # a read-only home only costs a re-measure next time
                _save_style_cost(cost, target)
        return cost.scaled(width, height), "measured"


def estimate_seconds(style: str, width: int, height: int, frames: int, analysis: ClipAnalysis | None = None,
                     *, workers: int | None = None, model: CostModel | None = None) -> float:
    """Estimated wall seconds to render ``frames`` frames of ``width`` x ``height`` in ``style``, for an ETA.

    ``analysis`` supplies the clip's difficulty (else the style's average in the history). ``workers``:
    default one per core, as a render uses; perfect scaling is assumed, so with several workers it is on
    the optimistic side. ``model``: default fitted on the history now.
    """
    from .pool import default_workers

    if frames < 0:
        raise ValueError(f"estimate_seconds: frames must be >= 0, got {frames}")
    model = model or CostModel.load()
    difficulty = analysis.difficulty_score if analysis is not None else None
    spf, _ = model.seconds_per_frame(style, width, height, difficulty)
    return spf * frames / max(1, workers or default_workers())
