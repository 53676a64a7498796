"""The preference model: P(A preferred over B) learnt from an artist's A/B ratings.

Input rows are the feedback store's A/B dataset (:func:`core.learn.feedback.ab_dataset`), dicts with
``"a_metrics"``, ``"b_metrics"`` (metric name -> float), ``"a_params"``, ``"b_params"`` (param -> value)
and ``"choice"`` (``"A"``, ``"B"`` or ``"tie"``). Ties are **dropped**: they say nothing about direction,
and the report counts them; so are ratings whose sides share no measured feature (the store keeps ``{}``
for an unmeasured render). The 1..5 ``rating`` is not used: the choice is the signal every row has.

**Features** are differences of what the rater perceives: the render metrics (``ssim``, ``mse``,
``edge_coherence``, ``sharpness``, ``colourfulness``, and on clips ``temporal_ssim``, ``warping_error``,
``flat_flicker``; any other numeric metric a row carries too). Each is mapped first so that a difference
means the same on every clip: scale-like measures (errors, flicker, Laplacian energy: :data:`LOG_OFFSETS`)
by log, so a difference is a ratio; bounded scores and colourfulness as they are. A feature is used when it
is a number on both sides of ``min_coverage`` of the ratings (older records have no temporal metrics);
elsewhere its difference counts as 0, no evidence either way. Style parameters (``param:NAME``) are not
perceptions: they enter only through one candidate model, which has to win cross-validation.

**The model** is a Bradley-Terry comparison, a logistic regression **without an intercept** over odd
features of the standardised differences ``z_j = (x_j(A) - x_j(B)) / scale_j``::

    logit P(A > B) = (1 / T) * sum_j  w_j . basis(z_j)

with ``basis(z) = [z]`` (linear) or the odd spline ``[z, sign(z) * max(|z| - k, 0) for k in knots]``.
Every term is odd and there is no intercept, so swapping A and B gives exactly ``1 - P`` and equal
candidates give exactly 0.5.

**Model selection**, because tens of ratings cannot carry dozens of weights (the first version, a weakly
regularised spline over every metric and parameter, scored 0.67 held-out accuracy on 60 ratings against 0.87
for one metric alone, and its SHAP named a parameter as the cause). On the training fold, ``cv_folds``-fold
cross-validation compares candidates, each with its L2 strength ``C`` chosen from ``c_grid`` by the same
folds:

- ``single: <metric>``: a one-metric logistic, for every metric; the best is the **baseline**;
- ``sparse: <a> + <b> ...``: forward selection from the baseline, adding the metric that helps most while it
  helps by more than one standard error, up to :data:`MAX_SPARSE` metrics (a rule of two perceptions,
  "sharper and more colourful", needs two weights, not eight);
- ``linear``: every metric; ``linear+params``: every metric and numeric style parameter;
  ``spline``: every metric through the spline basis.

The score is the out-of-fold Brier score, proper like the log loss but bounded, so the few choices a rater
gets wrong by accident cannot outweigh the many that show the rule. The winner is the candidate with the
fewest weights whose score is within one standard error (of the per-rating difference) of the best one's:
a richer model has to beat the best single metric clearly, and a tie goes to the single metric (fewer ways
to be wrong, and its explanation cannot name the wrong cause).

**Figures** (:class:`FitReport`): the winner and the baseline are fitted on the training fold and scored on
the held-out fold (``holdout``): accuracy of each, log loss, and the expected calibration error at T = 1 and
with the temperature fitted on the training fold's out-of-fold logits. The **saved model** is then the
winner refitted on every rating, its temperature fitted on out-of-fold logits over every rating.

**Uncertainty**: the Laplace approximation, the weights' covariance = inverse Hessian of the penalised log
loss at the fit; a prediction's logit standard error is ``sqrt(b' S b) / T`` (:meth:`PreferenceModel.predict`).

**SHAP**: for this linear model SHAP values are exact and closed-form (what ``shap.LinearExplainer``
computes with a zero-difference background): a feature's value is its weights times its basis terms,
summed over its spline terms, over T. Baseline: A and B alike, where the model says exactly 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import atomic
from core.errors import ConfigError, OutputError, StudioError
from core.paths import studio_home

#: Fewest decisive (non-tie), measured ratings a fit accepts: below that the held-out fold holds about a
#: dozen ratings and each cross-validation fold half that, too few to choose a model or trust its figures.
MIN_RATINGS = 40
#: Version of the JSON layout written by :meth:`PreferenceModel.save`. Format 1 (a spline over every feature,
#: chosen without cross-validation) is refused with a request to refit.
FORMAT_VERSION = 2
#: Prefix that keeps parameter features apart from metric features of the same name.
PARAM_PREFIX = "param:"
#: Scale-like metrics compared by ratio: ``log(max(x, 0) + offset)``, the offset about the least difference a
#: viewer could see, so a perfectly still render (0) is not an outlier: warping error and mse on the 0..1
#: squared scale (1e-5: under a grey level RMS), sharpness 0..255 squared, flat flicker in grey levels.
LOG_OFFSETS: dict[str, float] = {"warping_error": 1e-5, "mse": 1e-5, "sharpness": 1.0, "flat_flicker": 0.1}
#: Most metrics a forward-selected sparse candidate takes; beyond that the all-metric model competes.
MAX_SPARSE = 3
#: How the command line refits a model; quoted by errors that ask for a refit.
FIT_COMMAND = "python -m scripts.cli feedback fit"


class NotEnoughRatingsError(StudioError, ValueError):
    """Too few decisive A/B ratings (or all of one side) to fit and check a preference model.

    ``have`` / ``need``: usable ratings so far and the minimum (equal when the count is fine but the
    ratings are one-sided), so a page can show its own "N of M"."""

    def __init__(self, message: str, have: int = 0, need: int = 0) -> None:
        super().__init__(message)
        self.have, self.need = have, need


@dataclass(frozen=True)
class PreferenceConfig:
    """How a preference model is fitted (see the module docstring for the procedure).

    ``holdout``: fraction of the decisive ratings kept out of model selection and fitting, to measure the
    winner against the baseline. ``cv_folds``: folds of the cross-validation on the rest. ``c_grid``: inverse
    L2 strengths tried (on standardised differences). ``knots``: spline knots in standard deviations of a
    difference. ``min_coverage``: a feature is used when it is a number on both sides of at least this
    fraction of the ratings.
    """

    min_ratings: int = field(default=MIN_RATINGS, metadata={"min": 10})
    holdout: float = field(default=0.3, metadata={"min": 0.1, "max": 0.5})
    cv_folds: int = field(default=5, metadata={"min": 2, "max": 20})
    c_grid: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    knots: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    ece_bins: int = field(default=10, metadata={"min": 2, "max": 100})
    min_coverage: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    seed: int = 0


@dataclass(frozen=True)
class FitReport:
    """What a fit saw, which model won and how well it does.

    ``n_ratings``: decisive, measured ratings, all of them behind the saved model. ``winner``: the candidate
    that won cross-validation (``"single: <metric>"``, ``"sparse: <a> + <b>"``, ``"linear"``,
    ``"linear+params"`` or ``"spline"``), ``C`` its L2 strength; ``baseline``: the best single metric.
    ``cv``: (candidate, out-of-fold Brier score on the training fold), best first. ``holdout_accuracy`` /
    ``baseline_accuracy``: both fitted on the training fold, scored on the same held-out fold. ``ece_before`` /
    ``ece_after``: expected calibration error of the winner on the held-out fold at T = 1 and with the
    temperature fitted on the training fold; ``temperature`` is the saved model's. ``drivers``: (feature,
    mean |SHAP|) over all ratings, largest first, in calibrated
    log-odds.
    """

    n_rows: int
    n_ties: int
    n_unmeasured: int
    n_ratings: int
    n_train: int
    n_holdout: int
    winner: str
    C: float
    baseline: str
    cv: tuple[tuple[str, float], ...]
    temperature: float
    holdout_accuracy: float
    baseline_accuracy: float
    holdout_log_loss: float
    ece_before: float
    ece_after: float
    drivers: tuple[tuple[str, float], ...]

    def lines(self) -> list[str]:
        """A short human summary, one fact a line (the CLI prints these; the Style Lab shows them)."""
        top = ", ".join(f"{name} {value:.2f}" for name, value in self.drivers[:5])
        won = ("the best single metric won or tied" if self.winner.startswith("single")
               else f"beat the best single metric ({self.baseline})")
        return [
            f"ratings: {self.n_ratings} behind the model ({self.n_ties} ties and {self.n_unmeasured} without "
            f"metrics left out of {self.n_rows}); {self.n_train} train / {self.n_holdout} held out",
            f"model: {self.winner} (L2 C={self.C:g}): {won} in {len(self.cv)}-candidate cross-validation",
            f"held-out accuracy {self.holdout_accuracy:.3f} vs {self.baseline_accuracy:.3f} for {self.baseline} "
            f"alone; log loss {self.holdout_log_loss:.3f}",
            f"calibration (held out): ECE {self.ece_before:.3f} -> {self.ece_after:.3f} after temperature "
            f"scaling (model T {self.temperature:.3f})",
            f"drivers (mean |SHAP|, log-odds): {top}",
        ]


@dataclass(frozen=True)
class Prediction:
    """Per row: ``p`` = calibrated P(A preferred over B), ``logit`` its log-odds, ``logit_se`` the standard
    error of that logit (Laplace approximation: how far the ratings so far pin the weights down)."""

    p: np.ndarray
    logit: np.ndarray
    logit_se: np.ndarray

    def interval(self, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) of P at ``z`` standard errors of the logit (1.96: about 95 %)."""
        return sigmoid(self.logit - z * self.logit_se), sigmoid(self.logit + z * self.logit_se)


# --------------------------------------------------------------------------------------------- maths


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Logistic function, float64, stable for large |z|."""
    return np.exp(-np.logaddexp(0.0, -np.asarray(z, np.float64)))


def expected_calibration_error(prob: np.ndarray, outcome: np.ndarray, bins: int = 10) -> float:
    """ECE with ``bins`` equal-width bins over [0, 1]: sum over bins of (share of samples) x |mean
    predicted - observed frequency|. ``prob``: (N,) in [0, 1]; ``outcome``: (N,) of 0/1. 0.0 for N = 0."""
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(outcome, np.float64).ravel()
    if p.shape != y.shape:
        raise ValueError(f"expected prob and outcome of the same length. Got {p.shape} and {y.shape}")
    if p.size == 0:
        return 0.0
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(idx):
        m = idx == b
        total += m.mean() * abs(p[m].mean() - y[m].mean())
    return float(total)


def _losses(logits: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per-row log loss of ``sigmoid(logits)`` against 0/1 outcomes."""
    return np.logaddexp(0.0, -(2.0 * np.asarray(outcome, np.float64) - 1.0) * logits)


def _brier(logits: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """Per-row Brier score, (P - outcome)^2: proper like the log loss, but bounded, so the few ratings a
    rater gets wrong by mistake cannot outweigh the many that show the rule (model selection's score)."""
    return (sigmoid(logits) - np.asarray(outcome, np.float64)) ** 2


def _log_loss(logits: np.ndarray, outcome: np.ndarray) -> float:
    return float(np.mean(_losses(logits, outcome)))


def _accuracy(logits: np.ndarray, outcome: np.ndarray) -> float:
    """Share of rows whose sign is right; a logit of exactly 0 (no evidence) counts as half right."""
    right = np.where(logits == 0, 0.5, (logits > 0) == (outcome == 1))
    return float(np.mean(right)) if right.size else 0.0


def fit_temperature(logits: np.ndarray, outcome: np.ndarray) -> float:
    """The scalar T > 0 minimising the log loss of sigmoid(logits / T) against ``outcome`` (0/1).

    Searched over log T in [-5, 5] (a bounded 1-D problem: convex in 1/T, so the minimum is unique).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, np.float64)
    res = minimize_scalar(lambda lt: _log_loss(z / math.exp(lt), outcome), bounds=(-5.0, 5.0), method="bounded")
    return float(math.exp(res.x))


def spline_basis(z: np.ndarray, knots: Sequence[float]) -> np.ndarray:
    """(N, F) standardised differences -> (N, F * (1 + len(knots))) odd spline terms, feature-major:
    for each feature ``[z, sign(z) * max(|z| - k, 0) for k in knots]``. Odd, so ``basis(-z) == -basis(z)``;
    no knots: ``z`` itself (the linear model)."""
    z = np.asarray(z, np.float64)
    cols = [z[:, :, None]] + [(np.sign(z) * np.maximum(np.abs(z) - k, 0.0))[:, :, None] for k in knots]
    return np.concatenate(cols, axis=2).reshape(z.shape[0], -1)


def shap_values(z: np.ndarray, knots: Sequence[float], coef: np.ndarray) -> np.ndarray:
    """(N, F) standardised differences -> (N, F) SHAP values of the linear model ``coef`` over their spline
    terms, each feature's terms summed (SHAP values add). Baseline: zero difference, where the model is 0.

    Closed form: for a linear model with a single all-zero background row, SHAP value = weight x term, the
    same numbers ``shap.LinearExplainer`` returns, without importing shap (seconds) on every fit.
    """
    z = np.asarray(z, np.float64)
    terms = spline_basis(z, knots) * np.asarray(coef, np.float64)
    return terms.reshape(z.shape[0], z.shape[1], -1).sum(axis=2)


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float, start: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic regression without intercept: (weights, Hessian at them).

    Minimises ``sum_i log(1 + exp(-s_i x_i.w)) + |w|^2 / (2 C)``, ``s = 2y - 1`` (scikit-learn's
    convention for ``C``), by Newton's method with step halving: strictly convex, so a few steps reach the
    optimum. Why not scikit-learn: model selection runs hundreds of fits of a few weights each, where its
    per-call cost dominates, and the Hessian is wanted anyway (its inverse is the Laplace covariance).
    ``x``: (N, D) float64; ``y``: (N,) of 0/1; ``start``: warm start (D,).
    """
    d = x.shape[1]
    sign = 2.0 * y - 1.0
    w = np.zeros(d) if start is None else np.array(start, np.float64)
    ridge = np.eye(d) / C

    def objective(v: np.ndarray) -> float:
        return float(np.logaddexp(0.0, -sign * (x @ v)).sum() + v @ v / (2.0 * C))

    f = objective(w)
    for _ in range(100):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + w / C
        hess = (x * (p * (1.0 - p))[:, None]).T @ x + ridge
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while True:
            trial = w - t * step
            f_trial = objective(trial)
            if f_trial <= f or t < 1e-8:
                break
            t *= 0.5
        if f_trial > f:  # no descent left: at the optimum, to rounding
            break
        moved = float(np.max(np.abs(trial - w), initial=0.0))
        w, f = trial, f_trial
        if moved < 1e-10:
            break
    p = sigmoid(x @ w)
    return w, (x * (p * (1.0 - p))[:, None]).T @ x + ridge


# --------------------------------------------------------------------------------------------- rows


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def transform_of(feature: str) -> tuple[str, float]:
    """How ``feature`` is mapped before differencing: ``("log", offset)`` or ``("identity", 0.0)``."""
    return ("log", LOG_OFFSETS[feature]) if feature in LOG_OFFSETS else ("identity", 0.0)


def _apply(value: float | None, transform: tuple[str, float]) -> float | None:
    if value is None or transform[0] == "identity":
        return value
    return math.log(max(value, 0.0) + transform[1])


def _side(row: Mapping[str, Any], side: str, feature: str) -> float | None:
    if feature.startswith(PARAM_PREFIX):
        return _number((row.get(f"{side}_params") or {}).get(feature[len(PARAM_PREFIX):]))
    return _number((row.get(f"{side}_metrics") or {}).get(feature))


def differences(rows: Sequence[Mapping[str, Any]], features: Sequence[str],
                transforms: Sequence[tuple[str, float]] | None = None) -> np.ndarray:
    """(N, F) float64 of t(feature(A)) - t(feature(B)), ``t`` each feature's transform (default: by name,
    :func:`transform_of`); NaN where either side lacks a finite value."""
    tfs = [transform_of(f) for f in features] if transforms is None else list(transforms)
    out = np.full((len(rows), len(features)), np.nan)
    for i, row in enumerate(rows):
        for j, feat in enumerate(features):
            a, b = _side(row, "a", feat), _side(row, "b", feat)
            if a is not None and b is not None:
                out[i, j] = _apply(a, tfs[j]) - _apply(b, tfs[j])
    return out


def _standardise(diff: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """Differences over their scale; a missing one counts as 0, no evidence either way."""
    return np.nan_to_num(diff / np.asarray(scale, np.float64), nan=0.0)


def _rms_scale(diff: np.ndarray) -> np.ndarray:
    """Per column, the root mean square of the present differences (no centring: that would break
    ``P(B > A) = 1 - P(A > B)``); 1 for a column that never moves (its weight stays 0 anyway)."""
    present = ~np.isnan(diff)
    scale = np.sqrt(np.nansum(diff ** 2, axis=0) / np.maximum(present.sum(axis=0), 1))
    scale[~(scale > 0)] = 1.0
    return scale


def _decisive(rows: Sequence[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], np.ndarray, int]:
    """Rows with a winner, their outcomes (1 = A preferred) and the number of ties dropped."""
    kept, outcome, ties = [], [], 0
    for i, row in enumerate(rows):
        choice = row.get("choice")
        if choice == "tie":
            ties += 1
            continue
        if choice not in ("A", "B"):
            raise ConfigError(f"rating {row.get('id', i)!r}: choice {choice!r} is not one of A, B, tie")
        kept.append(row)
        outcome.append(1.0 if choice == "A" else 0.0)
    return kept, np.asarray(outcome, np.float64), ties


def _candidate_features(rows: Sequence[Mapping[str, Any]], min_coverage: float) -> list[str]:
    """Metric names, then ``param:`` names, that are numbers on both sides of enough rows and ever differ."""
    names: set[str] = set()
    for row in rows:
        names |= set(row.get("a_metrics") or {}) | set(row.get("b_metrics") or {})
        names |= {PARAM_PREFIX + k for k in (row.get("a_params") or {})}
    ordered = sorted(n for n in names if not n.startswith(PARAM_PREFIX))
    ordered += sorted(n for n in names if n.startswith(PARAM_PREFIX))
    keep = []
    for feat in ordered:
        pairs = [(_side(r, "a", feat), _side(r, "b", feat)) for r in rows]
        present = [(a, b) for a, b in pairs if a is not None and b is not None]
        if len(present) >= max(1, min_coverage * len(rows)) and any(a != b for a, b in present):
            keep.append(feat)
    return keep


@dataclass(frozen=True)
class _Usable:
    """The ratings a fit can use: rows, outcomes, candidate features and their raw differences."""

    rows: list[Mapping[str, Any]]
    y: np.ndarray
    features: list[str]
    diff: np.ndarray
    ties: int
    unmeasured: int


def _usable(rows: Sequence[Mapping[str, Any]], min_coverage: float) -> _Usable:
    kept, y, ties = _decisive(rows)
    features = _candidate_features(kept, min_coverage)
    diff = differences(kept, features)
    measured = ~np.all(np.isnan(diff), axis=1) if features else np.zeros(len(kept), bool)
    return _Usable([r for r, m in zip(kept, measured, strict=True) if m], y[measured], features, diff[measured],
                   ties, int(np.count_nonzero(~measured)))


def usable_ratings(rows: Sequence[Mapping[str, Any]], config: PreferenceConfig | None = None) -> int:
    """How many of ``rows`` count towards ``min_ratings``: decisive and measured (what a page shows as
    "N of M" before a fit is possible). ConfigError for a choice that is not A, B or tie."""
    return len(_usable(rows, (config or PreferenceConfig()).min_coverage).rows)


def _split(outcome: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / held-out index arrays, so both folds see both outcomes."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for label in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(outcome == label))
        n_held = round(len(idx) * holdout)
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


def _fold_of(outcome: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N,) stratified cross-validation fold number of each row."""
    rng = np.random.default_rng(seed + 1)
    out = np.zeros(len(outcome), int)
    for label in (0.0, 1.0):
        idx = rng.permutation(np.flatnonzero(outcome == label))
        out[idx] = np.arange(len(idx)) % folds
    return out


def _oof_logits(x: np.ndarray, y: np.ndarray, fold_of: np.ndarray, grid: Sequence[float]) -> np.ndarray:
    """(len(grid), N) out-of-fold logits of each C; the path runs from strong to weak L2, warm-started."""
    out = np.zeros((len(grid), len(y)))
    for f in np.unique(fold_of):
        tr, va = fold_of != f, fold_of == f
        w = None
        for ci, c in enumerate(grid):
            w, _ = fit_logistic(x[tr], y[tr], c, w)
            out[ci, va] = x[va] @ w
    return out


# --------------------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class _Candidate:
    """A candidate model: its feature columns and basis, its cross-validated C, and at that C the out-of-fold
    logits and per-rating Brier scores of the rows it was cross-validated on."""

    name: str
    columns: tuple[int, ...]
    knots: tuple[float, ...]
    C: float
    oof: np.ndarray
    scores: np.ndarray

    @property
    def score(self) -> float:
        return float(np.mean(self.scores))


def _design(z: np.ndarray, columns: Sequence[int], knots: Sequence[float]) -> np.ndarray:
    return spline_basis(z[:, list(columns)], knots)


def _within_one_se(cand: _Candidate, best: _Candidate) -> bool:
    """True when ``cand`` scores no worse than ``best`` by more than one standard error of their per-rating
    score difference (paired: both were scored on the same out-of-fold ratings)."""
    gap = cand.scores - best.scores
    se = float(np.std(gap, ddof=1) / math.sqrt(len(gap))) if len(gap) > 1 else math.inf
    return float(np.mean(gap)) <= se


class _Search:
    """Cross-validates candidate models on one set of standardised differences: each candidate gets the C of
    ``c_grid`` with the best out-of-fold Brier score (first of equals: the strongest L2)."""

    def __init__(self, z: np.ndarray, y: np.ndarray, cfg: PreferenceConfig) -> None:
        self.z, self.y, self.grid = z, y, sorted(cfg.c_grid)
        folds = max(2, min(cfg.cv_folds, int(min(y.sum(), len(y) - y.sum()))))
        self.fold_of = _fold_of(y, folds, cfg.seed)

    def __call__(self, name: str, columns: Sequence[int], knots: Sequence[float] = ()) -> _Candidate:
        oof = _oof_logits(_design(self.z, columns, knots), self.y, self.fold_of, self.grid)
        scores = _brier(oof, self.y[None, :])
        best = int(np.argmin(scores.mean(axis=1)))
        return _Candidate(name, tuple(columns), tuple(float(k) for k in knots), float(self.grid[best]), oof[best],
                          scores[best])


def _candidates(z: np.ndarray, y: np.ndarray, features: Sequence[str], cfg: PreferenceConfig) -> list[_Candidate]:
    """Every candidate of the module docstring, cross-validated: the single metrics, the forward-selected
    sparse models (best single, then the metric that helps most, up to ``MAX_SPARSE``), every metric,
    every metric and parameter, every metric through the spline."""
    cv = _Search(z, y, cfg)
    metrics = [j for j, f in enumerate(features) if not f.startswith(PARAM_PREFIX)]
    out = [cv(f"single: {features[j]}", (j,)) for j in metrics]
    current = min(out, key=lambda c: c.score) if out else None
    while current is not None and len(current.columns) < min(MAX_SPARSE, len(metrics) - 1):
        chosen = list(current.columns)
        trials = [cv("sparse: " + " + ".join(features[k] for k in (*chosen, j)), (*chosen, j))
                  for j in metrics if j not in chosen]
        step = min(trials, key=lambda c: c.score)
        if _within_one_se(current, step):  # the extra metric must earn its weight
            break
        current = step
        out.append(current)
    if len(metrics) > 1:
        out.append(cv("linear", metrics))
    if len(metrics) < len(features):
        out.append(cv("linear+params", range(len(features))))
    if metrics and cfg.knots:
        out.append(cv("spline", metrics, cfg.knots))
    return out


def _choose(candidates: Sequence[_Candidate]) -> tuple[_Candidate, _Candidate | None]:
    """(winner, best single metric or None). The one-standard-error rule: the winner is the candidate with the
    fewest weights whose cross-validated score is within one standard error of the best candidate's, so a
    richer model has to beat the best single metric clearly, and a tie goes to the single metric."""
    best = min(candidates, key=lambda c: c.score)
    close = [c for c in candidates if _within_one_se(c, best)]
    winner = min(close, key=lambda c: (len(c.columns) * (1 + len(c.knots)), c.score))
    singles = [c for c in candidates if c.name.startswith("single")]
    return winner, (min(singles, key=lambda c: c.score) if singles else None)


# --------------------------------------------------------------------------------------------- model


def default_path() -> Path:
    """Where the studio keeps its preference model: ``studio_home()/preference/model.json``."""
    return studio_home() / "preference" / "model.json"


def _not_enough(have: int, need: int, ties: int, unmeasured: int) -> NotEnoughRatingsError:
    return NotEnoughRatingsError(
        f"not enough ratings yet ({have} of {need}): rate {need - have} more A/B pairs with a winner and "
        f"measured variants before the preference model can be fitted ({ties} ties and {unmeasured} ratings "
        "with no metric to compare do not count)", have, need)


@dataclass(frozen=True)
class PreferenceModel:
    """A fitted preference model (see the module docstring). Build with :meth:`fit` or :meth:`load`.

    ``features``: the winner's features (one metric for a single-metric model). ``transforms``: per feature
    ``("log", offset)`` or ``("identity", 0.0)``, applied before differencing. ``scale``: per feature, the
    root mean square of its transformed difference over the ratings. ``knots``: () for a linear model.
    ``coef``: ``len(features) * (1 + len(knots))`` weights, feature-major, before the temperature;
    ``covariance``: their Laplace covariance. ``kind``: the winning candidate's name.
    """

    features: tuple[str, ...]
    transforms: tuple[tuple[str, float], ...]
    scale: tuple[float, ...]
    knots: tuple[float, ...]
    coef: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    temperature: float
    kind: str
    report: FitReport

    # ---- fitting

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, Any]], config: PreferenceConfig | None = None) -> PreferenceModel:
        """Choose, check and fit a model on feedback rows (the ``ab_dataset()`` contract); ties dropped.

        Raises :class:`NotEnoughRatingsError` below ``config.min_ratings`` decisive, measured ratings (its
        message says how many more are needed) or when a fold would hold only one outcome;
        :class:`ConfigError` for a choice that is not A, B or tie.
        """
        cfg = config or PreferenceConfig()
        data = _usable(rows, cfg.min_coverage)
        y, diff, n = data.y, data.diff, len(data.rows)
        if n < cfg.min_ratings:
            raise _not_enough(n, cfg.min_ratings, data.ties, data.unmeasured)
        train, held = _split(y, cfg.holdout, cfg.seed)
        for name, fold in (("training", train), ("held-out", held)):
            if len(np.unique(y[fold])) < 2:
                raise NotEnoughRatingsError(
                    f"the {name} fold of {n} ratings holds only one outcome "
                    f"({int(y.sum())} x A, {int(n - y.sum())} x B): rate pairs where each side wins", n, n)
        # 1. choose on the training fold, 2. score winner and baseline on the held-out fold
        z_train_all = _standardise(diff, _rms_scale(diff[train]))
        z_tr, z_ho = z_train_all[train], z_train_all[held]
        candidates = _candidates(z_tr, y[train], data.features, cfg)
        winner, baseline = _choose(candidates)
        held_logits = {}
        for cand in {c.name: c for c in (winner, baseline) if c is not None}.values():
            w, _ = fit_logistic(_design(z_tr, cand.columns, cand.knots), y[train], cand.C)
            held_logits[cand.name] = _design(z_ho, cand.columns, cand.knots) @ w
        raw_held = held_logits[winner.name]
        t_train = fit_temperature(winner.oof, y[train])
        # 3. refit the winner on every rating; its temperature from out-of-fold logits over all of them
        columns = list(winner.columns)
        features = [data.features[j] for j in columns]
        scale = _rms_scale(diff[:, columns])
        x_all = spline_basis(_standardise(diff[:, columns], scale), winner.knots)
        coef, hess = fit_logistic(x_all, y, winner.C)
        folds = max(2, min(cfg.cv_folds, int(min(y.sum(), n - y.sum()))))
        temperature = fit_temperature(_oof_logits(x_all, y, _fold_of(y, folds, cfg.seed), [winner.C])[0], y)
        shap_all = shap_values(_standardise(diff[:, columns], scale), winner.knots, coef / temperature)
        drivers = sorted(zip(features, np.abs(shap_all).mean(axis=0).tolist(), strict=True), key=lambda kv: -kv[1])
        base_name = baseline.name if baseline is not None else winner.name
        report = FitReport(
            n_rows=len(rows), n_ties=data.ties, n_unmeasured=data.unmeasured, n_ratings=n, n_train=len(train),
            n_holdout=len(held), winner=winner.name, C=winner.C, baseline=base_name.removeprefix("single: "),
            cv=tuple((c.name, c.score) for c in sorted(candidates, key=lambda c: c.score)),
            temperature=temperature,
            holdout_accuracy=_accuracy(raw_held, y[held]),
            baseline_accuracy=_accuracy(held_logits[base_name], y[held]),
            holdout_log_loss=_log_loss(raw_held / t_train, y[held]),
            ece_before=expected_calibration_error(sigmoid(raw_held), y[held], cfg.ece_bins),
            ece_after=expected_calibration_error(sigmoid(raw_held / t_train), y[held], cfg.ece_bins),
            drivers=tuple((name, float(v)) for name, v in drivers))
        return cls(features=tuple(features), transforms=tuple(transform_of(f) for f in features),
                   scale=tuple(float(v) for v in scale), knots=winner.knots, coef=tuple(float(c) for c in coef),
                   covariance=tuple(tuple(float(v) for v in r) for r in np.linalg.inv(hess)),
                   temperature=temperature, kind=winner.name, report=report)

    # ---- prediction

    def _basis(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        z = _standardise(differences(rows, self.features, self.transforms), self.scale)
        return spline_basis(z, self.knots)

    def logits(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(N,) calibrated log-odds that A is preferred over B, for rows shaped like feedback rows."""
        return self._basis(rows) @ np.asarray(self.coef) / self.temperature

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(N,) calibrated P(A preferred over B) in (0, 1); ``choice`` is not needed."""
        return sigmoid(self.logits(rows))

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> Prediction:
        """P(A preferred over B) per row with the standard error of its logit (see :class:`Prediction`)."""
        basis = self._basis(rows)
        logit = basis @ np.asarray(self.coef) / self.temperature
        var = np.einsum("ij,jk,ik->i", basis, np.asarray(self.covariance, np.float64), basis)
        return Prediction(sigmoid(logit), logit, np.sqrt(np.maximum(var, 0.0)) / self.temperature)

    def prob(self, a_metrics: Mapping[str, float], b_metrics: Mapping[str, float],
             a_params: Mapping[str, Any] | None = None, b_params: Mapping[str, Any] | None = None) -> float:
        """P(A preferred over B) for one pair given as metric (and parameter) dicts."""
        row = {"a_metrics": a_metrics, "b_metrics": b_metrics, "a_params": a_params or {}, "b_params": b_params or {}}
        return float(self.predict_proba([row])[0])

    # ---- explanation

    def explain(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """Per row, SHAP value per feature: its push on the calibrated log-odds of "A preferred", from 0
        (A and B alike). The values of a row sum to its :meth:`logits` value."""
        z = _standardise(differences(rows, self.features, self.transforms), self.scale)
        values = shap_values(z, self.knots, np.asarray(self.coef) / self.temperature)
        return [dict(zip(self.features, v.tolist(), strict=True)) for v in values]

    @property
    def drivers(self) -> tuple[tuple[str, float], ...]:
        """Global drivers: (feature, mean |SHAP|) over the ratings it was fitted on, largest first."""
        return self.report.drivers

    # ---- persistence

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: every number the model needs (features, transforms, scaler, spline, weights and
        their covariance, T, report)."""
        report = asdict(self.report)
        for key in ("cv", "drivers"):
            report[key] = [list(d) for d in getattr(self.report, key)]
        return {"format": FORMAT_VERSION, "kind": self.kind, "features": list(self.features),
                "transforms": [list(t) for t in self.transforms], "scale": list(self.scale),
                "knots": list(self.knots), "coef": list(self.coef),
                "covariance": [list(r) for r in self.covariance], "temperature": self.temperature,
                "report": report}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "preference model") -> PreferenceModel:
        """Inverse of :meth:`to_json`; a ConfigError naming ``source`` for anything inconsistent, and for a
        model saved in format 1 (its features and weights mean something else: refit it)."""
        if data.get("format") == 1:
            raise ConfigError(f"{source}: a preference model in the old format 1, which this studio no longer "
                              f"reads; refit it from the ratings: {FIT_COMMAND}")
        try:
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT_VERSION}")
            features = tuple(str(f) for f in data["features"])
            transforms = tuple((str(k), float(o)) for k, o in data["transforms"])
            scale = tuple(float(s) for s in data["scale"])
            knots = tuple(float(k) for k in data["knots"])
            coef = tuple(float(c) for c in data["coef"])
            covariance = tuple(tuple(float(v) for v in r) for r in data["covariance"])
            temperature = float(data["temperature"])
            rep = dict(data["report"])
            for key in ("cv", "drivers"):
                rep[key] = tuple((str(name), float(v)) for name, v in rep[key])
            report = FitReport(**rep)
            kind = str(data["kind"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a preference model ({exc})") from None
        d = len(features) * (1 + len(knots))
        if len(scale) != len(features) or len(transforms) != len(features) or len(coef) != d \
                or len(covariance) != d or any(len(r) != d for r in covariance):
            raise ConfigError(f"{source}: {len(features)} features but {len(transforms)} transforms, {len(scale)} "
                              f"scales, {len(coef)} weights and a {len(covariance)}-row covariance")
        if any(k not in ("log", "identity") for k, _ in transforms):
            raise ConfigError(f"{source}: transforms must be 'log' or 'identity', got {[k for k, _ in transforms]}")
        numbers = (*scale, *coef, *(v for r in covariance for v in r), temperature)
        if not (temperature > 0 and all(math.isfinite(v) for v in numbers)):
            raise ConfigError(f"{source}: temperature and weights must be finite, temperature > 0")
        return cls(features=features, transforms=transforms, scale=scale, knots=knots, coef=coef,
                   covariance=covariance, temperature=temperature, kind=kind, report=report)

    def save(self, path: Path | str | None = None) -> Path:
        """Write the model as JSON, atomically, to ``path`` (default :func:`default_path`)."""
        final = Path(path) if path is not None else default_path()
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(final, self.to_json())
        except OSError as exc:
            raise OutputError(f"{final}: cannot write the preference model ({exc.strerror})") from None
        return final

    @classmethod
    def load(cls, path: Path | str | None = None) -> PreferenceModel:
        """Read a model written by :meth:`save`; a ConfigError naming the file if missing or malformed."""
        import json

        src = Path(path) if path is not None else default_path()
        if not src.is_file():
            raise ConfigError(f"{src}: no preference model yet (fit one from at least {MIN_RATINGS} A/B ratings: "
                              f"{FIT_COMMAND})")
        try:
            data = json.loads(src.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{src}: cannot read the preference model ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: not a preference model (expected a JSON object)")
        return cls.from_json(data, str(src))
