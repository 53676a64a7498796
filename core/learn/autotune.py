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
   them with :class:`core.quality.metrics.MetricsMeter` and the style's own measures, and score by flicker
   and fidelity (mean warping error, and SSIM to the input, each relative to the style defaults'), feasible
   only within the style's floors, above an edge-coherence floor and at no more flicker than the style's
   defaults (the tuner is there to lower it: fidelity may not buy it back); or, with a fitted
   :class:`core.learn.preference.PreferenceModel`, by the predicted probability that an artist prefers the
   candidate over the base parameters, within the style's floors. :func:`propose_pairs` then names the A/B
   pairs whose rating would teach the preference model most.

Why the floors: the cheapest way to a low warping error is to erase the style (smooth everything, drop the
outlines): the cartoon's best pick once did, sharpness 1785 -> 178, and blurred candidates even agree
*better* with the input's edges, so the edge floor alone cannot stop it. Each style declares what makes it
itself (:attr:`stylizers.base.Stylizer.floors`: outlines, strokes, its grade, no blur), relative to the
output of its own defaults on the same frames, since what a style reaches depends on the clip.
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


#: width of :func:`local_space`'s ranges, as a fraction of each full range, and the share of a random search's
#: budget :func:`plan_around` spends there. Measured on two real clips (cartoon, budgets 8 and 12): with a
#: tenth and three quarters each search found a candidate within the floors that flickers less than the
#: defaults; with a fifth and a half, one of the four found none, and the far points almost never keep the floors.
LOCAL_FRACTION = 0.1
LOCAL_SHARE = 0.75


def local_space(space: Space, centre: Mapping[str, Any], fraction: float = LOCAL_FRACTION) -> Space:
    """``space`` narrowed around ``centre`` (the base's values): each range to ``fraction`` of its width,
    centred on the base and clipped to the range (ints widened to whole numbers); choices stay as they are.

    Why: a style's floors hold near its defaults and seldom far away (cartoon's Canny thresholds run to 1000,
    where no outline is left), so a random search over the whole space can come back with nothing feasible.
    """
    dims = []
    for d in space:
        base = centre.get(d.name)
        if d.kind == "choice" or d.low is None or d.high is None or not isinstance(base, (int, float)):
            dims.append(d)
            continue
        half = fraction * (d.high - d.low) / 2
        low, high = max(d.low, base - half), min(d.high, base + half)
        if d.kind == "int":
            low, high = max(int(d.low), math.floor(low)), min(int(d.high), math.ceil(high))
        steps = min(DEFAULT_STEPS, len(d.values))
        dims.append(Dimension(d.name, d.kind, _grid(d.kind, low, high, steps), low, high))
    return tuple(dims)


def plan_around(space: Space, centre: Mapping[str, Any], budget: int, seed: int = 0,
                check: Callable[[dict[str, Any]], object] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """:func:`plan`, except that a random search spends :data:`LOCAL_SHARE` of its budget in
    :func:`local_space` around ``centre`` ("random+local"): the rest still explores the whole space. A grid
    that fits is searched whole, as by :func:`plan`."""
    mode, points = plan(space, budget, seed, check)
    if mode != "random" or budget < 2:
        return mode, points
    _, near = plan(local_space(space, centre), max(1, min(budget - 1, round(budget * LOCAL_SHARE))), seed, check)
    _, far = plan(space, budget, seed, check)
    seen = {tuple(p.values()) for p in near}
    far = [p for p in far if tuple(p.values()) not in seen][:budget - len(near)]
    return "random+local", far + near


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
    return evaluate_points(points, objective, on_progress)


def evaluate_points(points: Sequence[Mapping[str, Any]], objective: Objective,
                    on_progress: Callable[[int, int], None] | None = None) -> list[Candidate]:
    """:func:`search`'s evaluation of points already planned -> candidates ranked best first."""
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


#: least distance (root mean square of metric differences over their spread among the candidates) between the
#: two sides of a proposed pair: the model predicts exactly 0.5 for two alike, which an artist cannot tell apart
MIN_PAIR_DISTANCE = 0.25


def metric_distances(candidates: Sequence[Candidate]) -> np.ndarray:
    """(n, n) distances between candidates: over the metrics all of them have, the root mean square of the
    differences, each metric in units of its standard deviation across the candidates (a metric that does not
    vary is left out). Zeros when nothing varies."""
    names = sorted(set.intersection(*(set(c.metrics) for c in candidates))) if candidates else []
    x = np.asarray([[c.metrics[k] for k in names] for c in candidates], np.float64).reshape(len(candidates), -1)
    sd = x.std(axis=0)
    z = x[:, sd > 0] / sd[sd > 0]
    if z.shape[1] == 0:
        return np.zeros((len(candidates), len(candidates)))
    return np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).mean(axis=2))


def propose_pairs(model: Any, candidates: Sequence[Candidate], n: int,
                  min_distance: float = MIN_PAIR_DISTANCE) -> list[PairProposal]:
    """The ``n`` A/B pairs whose rating would teach ``model`` (a fitted
    :class:`core.learn.preference.PreferenceModel`) most, closest to 0.5 first.

    Active learning by uncertainty: a rating teaches most where the model is least sure, predicted P(A > B)
    closest to 0.5. Only measured, feasible candidates take part (a pair outside the style's floors is not a
    choice to offer), and only pairs at least ``min_distance`` apart (:func:`metric_distances`): two near-equal
    candidates sit at 0.5 too, yet their rating says nothing. For diversity each candidate joins one pair until
    every candidate has one; only then do the remaining pairs follow, closest to 0.5 first.
    """
    pool = [c for c in candidates if c.metrics and c.feasible]
    if len(pool) < 2 or n <= 0:
        return []
    dist = metric_distances(pool)
    pairs = [(i, j) for i, j in itertools.combinations(range(len(pool)), 2) if dist[i, j] >= min_distance]
    if not pairs:
        return []
    rows = [{"a_metrics": pool[i].metrics, "b_metrics": pool[j].metrics, "a_params": pool[i].params,
             "b_params": pool[j].params} for i, j in pairs]
    p = np.asarray(model.predict_proba(rows), np.float64)
    order = [int(k) for k in np.argsort(np.abs(p - 0.5), kind="stable")]
    chosen: list[int] = []
    used: set[int] = set()
    for k in order:  # first: pairs of candidates not yet offered
        if len(chosen) < n and not used & set(pairs[k]):
            chosen.append(k)
            used.update(pairs[k])
    chosen += [k for k in order if k not in chosen][:n - len(chosen)]
    chosen.sort(key=lambda k: abs(p[k] - 0.5))
    return [PairProposal(pool[pairs[k][0]], pool[pairs[k][1]], float(p[k])) for k in chosen]


# --------------------------------------------------------------------------------------------- the studio objective


@dataclass(frozen=True)
class TuneConfig:
    """How :func:`tune` measures a candidate.

    ``frames``: how many worst frames to stylize (each with its predecessor, so temporal metrics exist).
    ``warmup``: frames before each predecessor fed through the stabiliser first, so its EMA state is
    closer to a render's (a render warms it over a whole pre-roll; this is the cheap part of that).
    ``edge_floor``: absolute floor on mean edge coherence; None: ``edge_floor_ratio`` x the base's.
    ``long_side``: the metrics' working size.
    ``fidelity_weight``: how much content kept (SSIM to the input) counts against flicker in the metric
    objective (:func:`flicker_fidelity`); 0 scores by warping error alone.
    """

    frames: int = field(default=8, metadata={"min": 1, "max": 64})
    warmup: int = field(default=2, metadata={"min": 0, "max": 32})
    edge_floor: float | None = field(default=None, metadata={"min": -1.0, "max": 1.0})
    edge_floor_ratio: float = field(default=0.8, metadata={"min": 0.0, "max": 1.0})
    long_side: int = field(default=320, metadata={"min": 16, "max": 4096})
    fidelity_weight: float = field(default=0.5, metadata={"min": 0.0, "max": 4.0})


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


def measure(style_cls: type, params: Any, shared: Mapping[str, Any], windows: Sequence[Window],
            temporal: Any, config: TuneConfig = TuneConfig()) -> dict[str, float]:
    """Stylize + stabilise each window as a render would (state reset at input cuts), measure each
    target frame against its predecessor -> mean of each metric over the targets (a metric absent from
    every target is left out: warping error needs a predecessor in the same shot), and of the style's own
    measures of its output (:meth:`stylizers.base.Stylizer.measures`, what its floors read)."""
    from core.quality.metrics import MetricsConfig, MetricsMeter, mean_metrics
    from core.render.temporal import Stabiliser
    from core.video.cuts import CutDetector

    stylizer = style_cls(params, shared)
    records = []
    own: list[dict[str, float]] = []
    for win in windows:
        stab = Stabiliser(temporal, enabled=style_cls.stabilise)
        cuts = CutDetector(temporal.cut_threshold)
        meter = MetricsMeter(MetricsConfig(long_side=config.long_side))
        for index, rgb in win.frames:
            if cuts.is_cut(rgb):
                stab.reset()
                meter.reset()
            styled = stylizer.stylize(rgb, index)
            out = stab(styled, rgb)  # flow mode measures motion on the input
            if index >= win.target - 1:
                rec = meter.update(index, rgb, out)
                if index == win.target and rec is not None:
                    records.append(rec)
            if index == win.target:
                own.append(style_cls.measures(rgb, styled, out))
    means = mean_metrics(records)
    for name in sorted({k for m in own for k in m}):
        means[name] = float(np.mean([m[name] for m in own if name in m]))
    return means


def floor_breaches(floors: Sequence[Any], metrics: Mapping[str, float], reference: Mapping[str, float]) -> list[str]:
    """The reasons ``metrics`` break a style's ``floors`` (:class:`stylizers.signature.Floor`) against the
    style defaults' ``reference`` on the same frames; empty when it keeps them all."""
    return [b for f in floors if (b := f.breach(metrics.get(f.measure), reference.get(f.measure)))]


def flicker_fidelity(metrics: Mapping[str, float], reference: Mapping[str, float], weight: float) -> float:
    """The metric objective, lower is better: (warping error / the reference's) x (the reference's SSIM to
    the input / this SSIM) ** ``weight``: 1.0 for the style's defaults, 0.5 for half their flicker at the
    same fidelity. Relative, so flicker and fidelity weigh alike whatever the clip's scale of either; a
    reference without a warping error (every worst frame after a cut) leaves it absolute. ``metrics`` must
    hold ``warping_error``; SSIM is taken as at least 0.001."""
    ref_we = reference.get("warping_error")
    score = metrics["warping_error"] / ref_we if ref_we else metrics["warping_error"]
    ssim, ref_ssim = metrics.get("ssim"), reference.get("ssim")
    if weight and ssim is not None and ref_ssim is not None:
        score *= (max(ref_ssim, 1e-3) / max(ssim, 1e-3)) ** weight
    return float(score)


@dataclass(frozen=True)
class TuneResult:
    """The outcome of :func:`tune`: ``candidates`` ranked best first, the ``base`` parameters' own
    evaluation, how the space was searched (``mode``: grid, random or random+local), the objective used, the edge floor
    applied (metric objective only), the frames used, A/B ``pairs`` to rate next and ``why`` the best
    candidate is preferred over the base (SHAP value per feature, calibrated log-odds; both with a model).
    ``floors``: the style's floors as applied, measure name -> "outline_density >= 0.0416" (relative to
    ``reference``, the style defaults' metrics on the same frames). ``sets``: the ``key=value`` overrides the
    base was built from, repeated in :meth:`best_sets` so the printed line renders what was measured."""

    style: str
    mode: str
    objective: str
    candidates: list[Candidate]
    base: Candidate
    edge_floor: float | None
    frames: tuple[int, ...]
    pairs: list[PairProposal] = field(default_factory=list)
    why: Mapping[str, float] = field(default_factory=dict)
    floors: Mapping[str, str] = field(default_factory=dict)
    reference: Mapping[str, float] = field(default_factory=dict)
    sets: Mapping[str, str] = field(default_factory=dict)

    def lines(self, top: int = 10) -> list[str]:
        """The ranked table (the ``top`` best, then the base), a header and the best ``--set`` line."""
        names = list(self.base.point)
        metric_cols = [m for m in (*_TABLE_METRICS, *(f for f in self.floors if f not in _TABLE_METRICS))
                       if any(m in c.metrics for c in (self.base, *self.candidates))]
        what = ("-P(preferred over base), lower is better" if self.objective == "preference"
                else "warping error x SSIM-to-input penalty relative to the style's defaults, lower is better")
        floor = f"; edge coherence floor {self.edge_floor:.3f}" if self.edge_floor is not None else ""
        kept = f"; style floors {', '.join(self.floors.values())}" if self.floors else ""
        head = [f"{self.style}: {len(self.candidates)} candidates by {self.mode} search on frames "
                f"{', '.join(map(str, self.frames))}; score = {what}{floor}{kept}"]
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
            best = next(c for c in self.candidates if c.feasible)
            if self.base.feasible and self.base.score is not None and best.score >= self.base.score:
                tail.append("(no candidate scores better than the base: keeping the base is as good)")
        else:
            tail.append("no feasible candidate: widen the space (--param) or lower the floor (--edge-floor); "
                        "the style's own floors hold whatever is searched")
        if self.why:
            top = sorted(self.why.items(), key=lambda kv: -abs(kv[1]))[:3]
            tail.append("why #1 over base (SHAP, log-odds): " + ", ".join(f"{k} {v:+.2f}" for k, v in top))
        for pair in self.pairs:
            tail.append(f"rate next: {label[id(pair.a)]} vs {label[id(pair.b)]} (P(A preferred) = {pair.p_a:.2f})")
        return head + body + tail

    def best_sets(self) -> list[str]:
        """``key=value`` strings for ``--set``: the base's own overrides, then the best feasible candidate's
        searched values (which win over an override of the same key). ``render`` takes them as a whole
        (:func:`core.render.spec.style_params`), so an order that passes through an invalid state on the way
        (``edge_low`` above the old ``edge_high``) is still accepted."""
        best = next((c for c in self.candidates if c.feasible), None)
        if best is None:
            return []
        merged = {**self.sets, **{k: str(v) for k, v in best.point.items()}}
        return [f"{k}={v}" for k, v in merged.items()]


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
    the style's analysis samples once; (3) measure the base, and the style's defaults under ``preset`` when
    ``sets`` change them (the reference of the style's floors and of the score); (4) search (:func:`plan_around`
    the base): each candidate is scored by :func:`flicker_fidelity`, infeasible outside the style's floors,
    below the edge floor or above the defaults' warping error, or, with ``model`` (a fitted PreferenceModel),
    by ``-P(candidate preferred over base)``, infeasible outside the style's floors; (5) with ``model`` and
    ``pairs`` > 0, propose A/B pairs (:func:`propose_pairs`).
    ``on_progress(done, total)`` counts the base (and a separate reference) as evaluations. Raises
    ConfigError (bad style, parameter, ``--param``, budget), MediaNotFoundError / UnsupportedVideoError (bad
    input).
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
    ref_params = build_job(path, Path(path).with_suffix(".autotune.mp4"), style, preset).params

    def build(point: dict[str, Any]) -> Any:
        return cls.pin(dataclasses.replace(base_params, **point))  # ConfigError for a refused combination

    mode, points = plan_around(space, {d.name: getattr(base_params, d.name) for d in space}, budget, seed, build)
    separate_ref = ref_params != base_params
    done_before = 1 + separate_ref
    total = len(points) + done_before

    # 2. the frames, once
    info = probe(path)
    cls.check_size(path, info.width, info.height)  # tiny frames: one line, before any frame is read
    windows = read_windows(path, config.frames, config.warmup, info)
    samples = read_samples(info, sample_indices(info, cls.analysis_samples))
    temporal = spec.preset.temporal

    def evaluate(params: Any) -> dict[str, float]:
        return measure(cls, params, cls.analyze(params, samples), windows, temporal, config)

    # 3. the base, and the style's defaults the floors are relative to
    base_metrics = evaluate(base_params)
    base_full = to_dict(base_params)
    if on_progress:
        on_progress(1, total)
    ref_metrics = base_metrics
    if separate_ref:
        ref_metrics = evaluate(ref_params)
        if on_progress:
            on_progress(2, total)
    floor = None
    if model is None:
        floor = config.edge_floor
        if floor is None and "edge_coherence" in base_metrics:
            floor = config.edge_floor_ratio * base_metrics["edge_coherence"]

    def score(metrics: Mapping[str, float], full: Mapping[str, Any]) -> Evaluation:
        breaches = floor_breaches(cls.floors, metrics, ref_metrics)
        if model is not None:
            p = model.prob(metrics, base_metrics, full, base_full)
            return Evaluation(-p, not breaches, "; ".join(breaches), metrics, full)
        if "warping_error" not in metrics:
            return Evaluation(None, False, "no warping error: every worst frame follows a cut", metrics, full)
        edge = metrics.get("edge_coherence", float("nan"))
        if floor is not None and not edge >= floor:
            breaches.append(f"edge coherence {edge:.3f} below the floor {floor:.3f}")
        ref_we = ref_metrics.get("warping_error")
        if ref_we is not None and metrics["warping_error"] > ref_we:  # fidelity may not buy back flicker
            breaches.append(f"warping error {metrics['warping_error']:.4g} above the defaults' {ref_we:.4g}")
        return Evaluation(flicker_fidelity(metrics, ref_metrics, config.fidelity_weight), not breaches,
                          "; ".join(breaches), metrics, full)

    # 4. search
    def objective(point: dict[str, Any]) -> Evaluation:
        params = build(point)
        return score(evaluate(params), to_dict(params))

    ranked = evaluate_points(points, objective,
                             (lambda done, _n: on_progress(done + done_before, total)) if on_progress else None)
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
                      pairs=proposals, why=why, reference=ref_metrics, sets=dict(sets or {}),
                      floors={f.measure: f.describe(ref_metrics.get(f.measure)) for f in cls.floors})
