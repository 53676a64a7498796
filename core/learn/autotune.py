"""The auto-tuner: search a style's parameters for the look that holds up best on a clip's hardest frames.

Three layers, each usable alone:

1. :func:`space_from_params` builds a search :data:`Space` from a style's ``Params`` field metadata
   (``min``/``max``/``choices``; ints and floats), optionally restricted by the user
   (``name=lo:hi[:steps]`` or ``name=a,b,c``).
2. :func:`search` evaluates points of a space with any objective: the **full grid** when it fits the
   budget (so a known optimum on the grid is found exactly), else **seeded random** points. It returns
   candidates ranked best first, infeasible ones last with their reason.
3. :func:`tune` is the studio's objective: per candidate, stylize the clip's K worst frames (each with
   its predecessor and a few warm-up frames, through the temporal stabiliser as a render would), measure
   them with :class:`core.quality.metrics.MetricsMeter` and score by mean warping error, feasible only while mean
   edge coherence stays above a floor; or, with a fitted :class:`core.learn.preference.PreferenceModel`, by
   the predicted probability that an artist prefers the candidate over the base parameters.
   :func:`propose_pairs` then names the A/B pairs the preference model is least sure about.

Why the edge floor: the cheapest way to a low warping error is to erase the picture (smooth everything,
drop the outlines); the floor keeps the tuner from "winning" that way. By default it is relative, a
fraction of the base parameters' edge coherence, since what a style can reach depends on the clip.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ConfigError

#: names of parameters never searched by default. A seed changes texture at random, not the look, and
#: tuning it would fit noise; the others describe the input or the machine, not the look (``transfer``:
#: how the video encodes light; ``range``: what a neural model expects; ``tile``/``overlap``: memory).
#: A user may still search one by naming it with ``--param``.
UNTUNED = frozenset({"seed", "transfer", "range", "tile", "overlap"})
#: grid points per numeric parameter when the user gives none
DEFAULT_STEPS = 5
#: largest grid whose valid points are counted one by one to see whether they fit the budget
_MAX_CHECKED_GRID = 20_000


# --------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Dimension:
    """One parameter to search.

    ``kind``: "int" or "float" (a range ``low..high``, sampled uniformly by random search) or "choice"
    (only ``values``). ``values``: the grid points, in order (evenly spaced over the range, or the
    choices).
    """

    name: str
    kind: str
    values: tuple[Any, ...]
    low: float | None = None
    high: float | None = None

    def sample(self, rng: np.random.Generator, n: int) -> list[Any]:
        """``n`` random values, stratified (Latin hypercube): the range is cut into ``n`` equal strata with
        one uniform value in each (ints inclusive), or the choices are dealt out evenly, then shuffled.
        Small budgets so cover every part of every parameter instead of clumping by chance."""
        if self.kind == "choice":
            return [self.values[i] for i in rng.permutation(np.resize(np.arange(len(self.values)), n))]
        u = (rng.permutation(n) + rng.random(n)) / n
        if self.kind == "int":
            lo, hi = int(self.low), int(self.high)
            return [min(hi, lo + int(v * (hi - lo + 1))) for v in u]
        return [_round(float(self.low + v * (self.high - self.low))) for v in u]


#: A search space: one dimension per parameter searched.
Space = tuple[Dimension, ...]


def _round(x: float) -> float:
    """4 significant digits: readable tables, and no parameter here is that sensitive."""
    return float(f"{x:.4g}")


def _grid(kind: str, low: float, high: float, steps: int) -> tuple[Any, ...]:
    if kind == "int":
        if high - low + 1 <= steps:
            return tuple(range(int(low), int(high) + 1))
        return tuple(dict.fromkeys(round(float(v)) for v in np.linspace(low, high, steps)))
    return tuple(dict.fromkeys(_round(float(v)) for v in np.linspace(low, high, steps)))


def _field_kind(tp: Any) -> str | None:
    """"int", "float" or "str" for plain field types; None for anything else (bool, optional, tuples)."""
    return {int: "int", float: "float", str: "str"}.get(tp)


def _parse(kind: str, text: str, where: str) -> Any:
    try:
        return int(text) if kind == "int" else float(text) if kind == "float" else text
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None


def _check(f: dataclasses.Field, value: Any, where: str) -> None:
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if isinstance(value, (int, float)) and not (value == value and math.isfinite(value)):
        raise ConfigError(f"{where}: {value!r} is not a finite number")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{where}: {value!r} is below the minimum {meta['min']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{where}: {value!r} is above the maximum {meta['max']}")


def _user_dimension(f: dataclasses.Field, kind: str, text: str) -> Dimension:
    """``lo:hi[:steps]``, ``a,b,c`` or a single value, checked against the field's type and range."""
    where = f"--param {f.name}={text}"
    if ":" in text:
        if kind == "str":
            raise ConfigError(f"{where}: {f.name} takes words; list them as a,b,c")
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise ConfigError(f"{where}: expected LO:HI or LO:HI:STEPS")
        low, high = (_parse(kind, p.strip(), where) for p in parts[:2])
        steps = _parse("int", parts[2].strip(), where) if len(parts) == 3 else DEFAULT_STEPS
        if low > high:
            raise ConfigError(f"{where}: the low end {low} is above the high end {high}")
        if steps < 1 or (steps == 1 and low != high):
            raise ConfigError(f"{where}: steps must be at least 2 for a range (got {steps})")
        for v in (low, high):
            _check(f, v, where)
        if "choices" in f.metadata:  # a range over a choice field: the choices inside it
            values = tuple(c for c in f.metadata["choices"] if low <= c <= high)
            return Dimension(f.name, "choice", values)
        return Dimension(f.name, kind, _grid(kind, low, high, steps), low, high)
    values = tuple(dict.fromkeys(_parse(kind, p.strip(), where) for p in text.split(",") if p.strip()))
    if not values:
        raise ConfigError(f"{where}: no value given")
    for v in values:
        _check(f, v, where)
    return Dimension(f.name, "choice", values)


def space_from_params(params_cls: type, restrict: Mapping[str, str] | None = None,
                      steps: int = DEFAULT_STEPS) -> Space:
    """The search space of a style's ``Params`` dataclass.

    Without ``restrict``: every int or float field with both ``min`` and ``max``, and every field with
    ``choices``, except :data:`UNTUNED` names; ``steps`` grid points per range. With ``restrict``
    (``{"name": "lo:hi[:steps]" | "a,b,c"}``, the ``--param`` strings), exactly those parameters; the rest
    stay at their base values. Raises ConfigError naming the parameter and the value for an unknown name,
    a wrong type, a value outside the field's range or choices, or a reversed range.
    """
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    hints = typing.get_type_hints(params_cls)
    if restrict:
        dims = []
        for name, text in restrict.items():
            if name not in fields:
                known = ", ".join(sorted(fields)) or "none"
                raise ConfigError(f"--param {name}={text}: unknown parameter {name!r} (known: {known})")
            kind = _field_kind(hints[name])
            if kind is None:
                raise ConfigError(f"--param {name}={text}: {name} is not a number or a word, so it cannot be searched")
            dims.append(_user_dimension(fields[name], kind, text))
        return tuple(dims)
    dims = []
    for name, f in fields.items():
        kind = _field_kind(hints[name])
        if kind is None or name in UNTUNED:
            continue
        meta = f.metadata
        if "choices" in meta:
            dims.append(Dimension(name, "choice", tuple(meta["choices"])))
        elif kind in ("int", "float") and "min" in meta and "max" in meta:
            dims.append(Dimension(name, kind, _grid(kind, meta["min"], meta["max"], steps), meta["min"], meta["max"]))
    return tuple(dims)


def grid_size(space: Space) -> int:
    """Number of points of the full grid (1 for an empty space: the base itself)."""
    return math.prod(len(d.values) for d in space)


def _valid(check: Callable[[dict[str, Any]], object] | None, point: dict[str, Any]) -> bool:
    if check is None:
        return True
    try:
        check(dict(point))
    except ConfigError:
        return False
    return True


def plan(space: Space, budget: int, seed: int = 0,
         check: Callable[[dict[str, Any]], object] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """("grid", every grid point) when the grid fits ``budget``, else ("random", ``budget`` distinct points
    drawn with ``seed``, stratified per parameter: see :meth:`Dimension.sample`). Points are ``{name: value}``
    dicts. Raises ConfigError for a budget below 1.

    ``check(point)`` raises ConfigError for a combination the style refuses (``edge_low > edge_high``):
    random search draws others in its place, and the grid "fits" when its *valid* points do (the refused
    ones stay in the grid, to be reported with their reason; they cost no evaluation).
    """
    if budget < 1:
        raise ConfigError(f"budget: expected at least 1 evaluation, got {budget}")
    names = [d.name for d in space]
    size = grid_size(space)
    if size <= budget or (check is not None and size <= _MAX_CHECKED_GRID):
        grid = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(d.values for d in space))]
        if size <= budget or sum(_valid(check, p) for p in grid) <= budget:
            return "grid", grid
    rng = np.random.default_rng(seed)
    seen: dict[tuple, dict[str, Any]] = {}
    for _ in range(50):  # duplicates and refused points are replaced, in fresh stratified batches
        columns = [d.sample(rng, budget) for d in space]
        for values in zip(*columns, strict=True):
            point = dict(zip(names, values, strict=True))
            if len(seen) < budget and tuple(values) not in seen and _valid(check, point):
                seen[tuple(values)] = point
        if len(seen) == budget:
            break
    return "random", list(seen.values())


# --------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Evaluation:
    """What an objective says of one point. ``score``: lower is better (None when infeasible and unknown).

    ``reason``: why an infeasible point is infeasible. ``params``: the full parameters evaluated, when the
    objective knows more than the point (the preference model compares all of them).
    """

    score: float | None
    feasible: bool = True
    reason: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Candidate:
    """One evaluated point. ``point``: the searched values; ``params``: everything evaluated (the point
    when the objective says no more)."""

    point: Mapping[str, Any]
    score: float | None
    feasible: bool = True
    reason: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)


Objective = Callable[[dict[str, Any]], "Evaluation | float"]


def rank(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Feasible candidates by score ascending (stable), then infeasible ones in evaluation order."""
    ok = sorted((c for c in candidates if c.feasible and c.score is not None), key=lambda c: c.score)
    return ok + [c for c in candidates if not (c.feasible and c.score is not None)]


def search(space: Space, objective: Objective, budget: int, seed: int = 0, *,
           check: Callable[[dict[str, Any]], object] | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> list[Candidate]:
    """Evaluate the :func:`plan` of ``space`` with ``objective`` -> candidates ranked best first.

    ``objective(point)`` returns an :class:`Evaluation` or a plain float score (lower is better). A
    :class:`ConfigError` it raises (parameters a style refuses together, say ``edge_low > edge_high``)
    makes that point infeasible with the message as its reason; any other error propagates. ``check``:
    see :func:`plan`. ``on_progress(done, total)`` after each point.
    """
    _, points = plan(space, budget, seed, check)
    out = []
    for i, point in enumerate(points):
        try:
            ev = objective(dict(point))
        except ConfigError as exc:
            ev = Evaluation(score=None, feasible=False, reason=str(exc))
        if not isinstance(ev, Evaluation):
            ev = Evaluation(score=float(ev))
        out.append(Candidate(point=dict(point), score=ev.score, feasible=ev.feasible and ev.score is not None,
                             reason=ev.reason or ("" if ev.score is not None else "no score"),
                             metrics=dict(ev.metrics), params=dict(ev.params if ev.params is not None else point)))
        if on_progress:
            on_progress(i + 1, len(points))
    return rank(out)


@dataclass(frozen=True)
class PairProposal:
    """A pair worth rating next: the preference model's ``p_a`` = P(a preferred over b) is near 0.5."""

    a: Candidate
    b: Candidate
    p_a: float


def propose_pairs(model: Any, candidates: Sequence[Candidate], n: int) -> list[PairProposal]:
    """The ``n`` pairs of measured candidates whose predicted P(A > B) is closest to 0.5 (ties: earlier
    candidates first). ``model`` is a fitted :class:`core.learn.preference.PreferenceModel`."""
    measured = [c for c in candidates if c.metrics]
    pairs = list(itertools.combinations(measured, 2))
    if not pairs or n <= 0:
        return []
    rows = [{"a_metrics": a.metrics, "b_metrics": b.metrics, "a_params": a.params, "b_params": b.params}
            for a, b in pairs]
    p = model.predict_proba(rows)
    order = np.argsort(np.abs(p - 0.5), kind="stable")[:n]
    return [PairProposal(pairs[i][0], pairs[i][1], float(p[i])) for i in order]


# --------------------------------------------------------------------------------------------- the studio objective


@dataclass(frozen=True)
class TuneConfig:
    """How :func:`tune` measures a candidate.

    ``frames``: how many worst frames to stylize (each with its predecessor, so temporal metrics exist).
    ``warmup``: frames before each predecessor fed through the stabiliser first, so its EMA state is
    closer to a render's (a render warms it over a whole pre-roll; this is the cheap part of that).
    ``edge_floor``: absolute floor on mean edge coherence; None: ``edge_floor_ratio`` x the base's.
    ``long_side``: the metrics' working size.
    """

    frames: int = field(default=8, metadata={"min": 1, "max": 64})
    warmup: int = field(default=2, metadata={"min": 0, "max": 32})
    edge_floor: float | None = field(default=None, metadata={"min": -1.0, "max": 1.0})
    edge_floor_ratio: float = field(default=0.8, metadata={"min": 0.0, "max": 1.0})
    long_side: int = field(default=320, metadata={"min": 16, "max": 4096})


@dataclass(frozen=True)
class Window:
    """Consecutive input frames ``start .. target`` (inclusive); ``target`` is the measured worst frame."""

    target: int
    frames: tuple[tuple[int, np.ndarray], ...]
    reason: str = ""


def read_windows(path: str | Path, k: int, warmup: int, info: Any = None) -> list[Window]:
    """The ``k`` worst frames of the clip (:func:`core.learn.sampling.worst_frames`), each decoded with its
    predecessor and ``warmup`` frames before that. A pick at a cut or at frame 0 measures the next frame
    instead (the picked one has no predecessor in its shot). (H, W, 3) uint8 RGB frames. ``info``: the
    clip's probe, when the caller has it."""
    from core.video.probe import probe
    from core.video.reader import Reader

    from .sampling import worst_frames

    info = info if info is not None else probe(path)
    picks = worst_frames(path, k)
    targets: dict[int, str] = {}
    for pick in picks:
        # a cut's own frame has no predecessor in its shot: measure the frame after it, where the temporal
        # state restarts (the reason the cut was picked); frame 0 likewise measures frame 1
        t = pick.index + 1 if pick.reason == "cut" else pick.index
        t = min(max(t, 1), info.frame_count - 1)
        targets.setdefault(t, pick.reason)
    windows = []
    with Reader(info) as reader:
        for t in sorted(targets):
            start = max(0, t - 1 - warmup)
            frames = tuple((f.index, f.rgb) for f in reader.frames(start, t + 1))
            windows.append(Window(target=t, frames=frames, reason=targets[t]))
    return windows


def _mean_metrics(records: Sequence[Any]) -> dict[str, float]:
    from core.quality.metrics import METRIC_NAMES

    out = {}
    for name in METRIC_NAMES:
        vals = [getattr(r, name) for r in records if getattr(r, name) is not None]
        if vals:
            out[name] = float(np.mean(vals))
    return out


def measure(style_cls: type, params: Any, shared: Mapping[str, Any], windows: Sequence[Window],
            temporal: Any, config: TuneConfig = TuneConfig()) -> dict[str, float]:
    """Stylize + stabilise each window as a render would (state reset at input cuts), measure each
    target frame against its predecessor -> mean of each metric over the targets (a metric absent from
    every target is left out: warping error needs a predecessor in the same shot)."""
    from core.quality.metrics import MetricsConfig, MetricsMeter
    from core.render.temporal import Stabiliser
    from core.video.cuts import CutDetector

    stylizer = style_cls(params, shared)
    records = []
    for win in windows:
        stab = Stabiliser(temporal, enabled=style_cls.stabilise)
        cuts = CutDetector(temporal.cut_threshold)
        meter = MetricsMeter(MetricsConfig(long_side=config.long_side))
        for index, rgb in win.frames:
            if cuts.is_cut(rgb):
                stab.reset()
                meter.reset()
            out = stab(stylizer.stylize(rgb, index), rgb)  # flow mode measures motion on the input
            if index >= win.target - 1:
                rec = meter.update(index, rgb, out)
                if index == win.target and rec is not None:
                    records.append(rec)
    return _mean_metrics(records)


@dataclass(frozen=True)
class TuneResult:
    """The outcome of :func:`tune`: ``candidates`` ranked best first, the ``base`` parameters' own
    evaluation, how the space was searched (``mode``: grid or random), the objective used, the edge floor
    applied (metric objective only), the frames used, A/B ``pairs`` to rate next and ``why`` the best
    candidate is preferred over the base (SHAP value per feature, calibrated log-odds; both with a model)."""

    style: str
    mode: str
    objective: str
    candidates: list[Candidate]
    base: Candidate
    edge_floor: float | None
    frames: tuple[int, ...]
    pairs: list[PairProposal] = field(default_factory=list)
    why: Mapping[str, float] = field(default_factory=dict)

    def lines(self, top: int = 10) -> list[str]:
        """The ranked table (the ``top`` best, then the base), a header and the best ``--set`` line."""
        names = list(self.base.point)
        metric_cols = [m for m in _TABLE_METRICS if any(m in c.metrics for c in (self.base, *self.candidates))]
        what = ("-P(preferred over base), lower is better" if self.objective == "preference"
                else "mean warping error, lower is better")
        floor = f"; edge coherence floor {self.edge_floor:.3f}" if self.edge_floor is not None else ""
        head = [f"{self.style}: {len(self.candidates)} candidates by {self.mode} search on frames "
                f"{', '.join(map(str, self.frames))}; score = {what}{floor}"]
        label = {id(c): f"#{i}" for i, c in enumerate(self.candidates, 1)}
        label[id(self.base)] = "base"
        table = [["rank", "score", *names, *metric_cols, "note"]]
        for c in [*self.candidates[:max(0, top)], self.base]:
            table.append([label[id(c)], _fmt(c.score), *(_fmt(c.point.get(n)) for n in names),
                          *(_fmt(c.metrics.get(m)) for m in metric_cols), c.reason])
        widths = [max(len(row[j]) for row in table) for j in range(len(table[0]))]
        body = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
        tail = []
        if self.best_sets():
            tail.append("best: " + " ".join(f"--set {kv}" for kv in self.best_sets()))
        else:
            tail.append("no feasible candidate: widen the space (--param) or lower the floor (--edge-floor)")
        if self.why:
            top = sorted(self.why.items(), key=lambda kv: -abs(kv[1]))[:3]
            tail.append("why #1 over base (SHAP, log-odds): " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
        for pair in self.pairs:
            tail.append(f"rate next: {label[id(pair.a)]} vs {label[id(pair.b)]} (P(A preferred) = {pair.p_a:.2f})")
        return head + body + tail

    def best_sets(self) -> list[str]:
        """``key=value`` strings of the best feasible candidate's searched values (for ``--set``)."""
        best = next((c for c in self.candidates if c.feasible), None)
        return [f"{k}={v}" for k, v in best.point.items()] if best else []


_TABLE_METRICS = ("warping_error", "edge_coherence", "sharpness", "ssim", "temporal_ssim")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def tune(path: str | Path, style: str, budget: int = 24, *, preset: str = "balanced",
         sets: Mapping[str, str] | None = None, restrict: Mapping[str, str] | None = None,
         model: Any = None, config: TuneConfig = TuneConfig(), seed: int = 0, pairs: int = 0,
         on_progress: Callable[[int, int], None] | None = None) -> TuneResult:
    """Search ``style``'s parameters on the clip at ``path``.

    Steps: (1) check the input, resolve the base parameters (style defaults, ``preset``, ``sets``) and the
    space (``restrict``: ``--param`` strings) before any decoding; (2) read the worst-frame windows and
    the style's analysis samples once; (3) measure the base; (4) search: each candidate is scored by mean
    warping error, infeasible below the edge floor, or, with ``model`` (a fitted PreferenceModel), by
    ``-P(candidate preferred over base)``; (5) with ``model`` and ``pairs`` > 0, propose A/B pairs.
    ``on_progress(done, total)`` counts the base as one evaluation. Raises ConfigError (bad style,
    parameter, ``--param``, budget), MediaNotFoundError / UnsupportedVideoError (bad input).
    """
    from core.config import to_dict, validate
    from core.render.plan import read_samples, sample_indices
    from core.render.spec import build_job
    from core.video.probe import check_input_file, probe
    from stylizers import get_style

    # 1. everything a user typed, checked before decoding
    check_input_file(Path(path))
    validate(config, "autotune")
    spec = build_job(path, Path(path).with_suffix(".autotune.mp4"), style, preset, dict(sets or {}))
    cls = get_style(style)
    space = space_from_params(cls.Params, restrict)
    base_params = spec.params

    def build(point: dict[str, Any]) -> Any:
        return cls.pin(dataclasses.replace(base_params, **point))  # ConfigError for a refused combination

    mode, points = plan(space, budget, seed, build)
    total = len(points) + 1

    # 2. the frames, once
    info = probe(path)
    cls.check_size(path, info.width, info.height)  # tiny frames: one line, before any frame is read
    windows = read_windows(path, config.frames, config.warmup, info)
    samples = read_samples(info, sample_indices(info, cls.analysis_samples))
    temporal = spec.preset.temporal

    def evaluate(params: Any) -> dict[str, float]:
        return measure(cls, params, cls.analyze(params, samples), windows, temporal, config)

    # 3. the base
    base_metrics = evaluate(base_params)
    base_full = to_dict(base_params)
    if on_progress:
        on_progress(1, total)
    floor = None
    if model is None:
        floor = config.edge_floor
        if floor is None and "edge_coherence" in base_metrics:
            floor = config.edge_floor_ratio * base_metrics["edge_coherence"]

    def score(metrics: Mapping[str, float], full: Mapping[str, Any]) -> Evaluation:
        if model is not None:
            p = model.prob(metrics, base_metrics, full, base_full)
            return Evaluation(score=-p, metrics=metrics, params=full)
        if "warping_error" not in metrics:
            return Evaluation(None, False, "no warping error: every worst frame follows a cut", metrics, full)
        edge = metrics.get("edge_coherence", float("nan"))
        if floor is not None and not edge >= floor:
            return Evaluation(metrics["warping_error"], False,
                              f"edge coherence {edge:.3f} below the floor {floor:.3f}", metrics, full)
        return Evaluation(metrics["warping_error"], metrics=metrics, params=full)

    # 4. search
    def objective(point: dict[str, Any]) -> Evaluation:
        params = build(point)
        return score(evaluate(params), to_dict(params))

    ranked = search(space, objective, budget, seed, check=build,
                    on_progress=(lambda done, _n: on_progress(done + 1, total)) if on_progress else None)
    base_ev = score(base_metrics, base_full)
    base = Candidate(point={d.name: base_full.get(d.name) for d in space}, score=base_ev.score,
                     feasible=base_ev.feasible, reason=base_ev.reason, metrics=base_metrics, params=base_full)
    # 5. what to rate next
    proposals = propose_pairs(model, [base, *ranked], pairs) if model is not None and pairs > 0 else []
    why: dict[str, float] = {}
    if model is not None and ranked and ranked[0].feasible:
        best = ranked[0]
        why = model.explain([{"a_metrics": best.metrics, "b_metrics": base_metrics, "a_params": best.params,
                              "b_params": base_full}])[0]
    return TuneResult(style=style, mode=mode, objective="preference" if model is not None else "metrics",
                      candidates=ranked, base=base, edge_floor=floor, frames=tuple(w.target for w in windows),
                      pairs=proposals, why=why)
