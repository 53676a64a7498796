"""The preference model: P(A preferred over B) learnt from an artist's A/B ratings.

Input rows are the feedback store's A/B dataset (:func:`core.learn.feedback.ab_dataset`), dicts with
``"a_metrics"``, ``"b_metrics"`` (metric name -> float), ``"a_params"``, ``"b_params"`` (param -> value)
and ``"choice"`` (``"A"``, ``"B"`` or ``"tie"``). Ties are **dropped**: they say nothing about direction,
and the report counts them; so are ratings whose sides share no measured metric (the store keeps ``{}``
for an unmeasured render). The 1..5 ``rating`` is not used: the choice is the signal every row has.

The model is a Bradley-Terry comparison with an additive utility, fitted by scikit-learn's logistic
regression **without an intercept**:

    logit P(A > B) = (1 / T) * sum_j  w_j . basis(z_j),    z_j = (x_j(A) - x_j(B)) / scale_j

where ``x_j`` is a metric or a numeric style parameter and ``basis(z) = [z, sign(z) * max(|z| - k, 0)
for k in knots]`` is an odd piecewise-linear spline. Why this and not gradient boosting:

- every feature is odd in the difference and there is no intercept, so swapping A and B gives exactly
  ``1 - P`` and two equal candidates get exactly 0.5; boosted trees give neither without tricks;
- ratings are scarce (tens to hundreds); a regularised linear model over a few spline terms per metric
  needs far fewer of them than trees, and logistic outputs start close to calibrated;
- the spline knots (in standard deviations of the difference) let a metric matter only when it moves a
  lot, the typical artist rule "less flicker wins, unless it gets much blurrier", which a purely linear
  model cannot express;
- SHAP values are exact and instant (``shap.LinearExplainer``), and a metric's SHAP value is the sum over
  its spline terms (SHAP values are additive), so explanations name metrics, not basis functions;
- the whole model is a few dozen numbers, persisted as JSON (never pickle).

Calibration: the regression is fitted on a training fold; a single temperature ``T`` is then fitted on a
held-out fold by minimising log loss, and the expected calibration error (equal-width bins) is reported
on that fold before and after. The held-out accuracy is measured there too.

SHAP baseline: a zero difference (A and B alike), where the model says exactly 0.5. A value is how much a
metric's difference moves the calibrated log-odds of "A preferred" away from a coin flip.
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

#: Fewest decisive (non-tie) ratings a fit accepts: below that the held-out fold that calibrates the model
#: holds about a dozen ratings, too few to fit a temperature or to trust an accuracy figure.
MIN_RATINGS = 40
#: Version of the JSON layout written by :meth:`PreferenceModel.save`.
FORMAT_VERSION = 1
#: Prefix that keeps parameter features apart from metric features of the same name.
PARAM_PREFIX = "param:"


class NotEnoughRatingsError(StudioError, ValueError):
    """Too few decisive A/B ratings (or all of one side) to fit and calibrate a preference model."""


@dataclass(frozen=True)
class PreferenceConfig:
    """How a preference model is fitted.

    ``holdout``: fraction of the decisive ratings kept out of the regression to fit the temperature and to
    measure accuracy and ECE. ``C``: inverse L2 strength of the logistic regression (weak: the spline terms
    need room to make a step; the temperature then corrects over-confidence). ``knots``: spline knots in
    standard deviations of a feature's difference. ``min_coverage``: a feature is used when it is a finite
    number on both sides of at least this fraction of the ratings (elsewhere its difference counts as 0,
    no evidence either way).
    """

    min_ratings: int = field(default=MIN_RATINGS, metadata={"min": 10})
    holdout: float = field(default=0.3, metadata={"min": 0.1, "max": 0.5})
    C: float = field(default=10.0, metadata={"min": 1e-4, "max": 1e4})
    knots: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    ece_bins: int = field(default=10, metadata={"min": 2, "max": 100})
    min_coverage: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    seed: int = 0


@dataclass(frozen=True)
class FitReport:
    """What a fit saw and how well it does on its held-out fold.

    ``ece_before`` / ``ece_after``: expected calibration error of the held-out fold with T = 1 and with the
    fitted T (``ece_after`` is measured on the fold T was fitted on: one scalar, so barely optimistic).
    ``drivers``: (feature, mean |SHAP|) over all decisive ratings, largest first, in calibrated log-odds.
    """

    n_rows: int
    n_ties: int
    n_unmeasured: int
    n_train: int
    n_holdout: int
    temperature: float
    holdout_accuracy: float
    holdout_log_loss: float
    ece_before: float
    ece_after: float
    drivers: tuple[tuple[str, float], ...]

    def lines(self) -> list[str]:
        """A short human summary, one fact a line."""
        top = ", ".join(f"{name} {value:.2f}" for name, value in self.drivers[:5])
        return [
            f"ratings: {self.n_rows} ({self.n_ties} ties, {self.n_unmeasured} without metrics left out), "
            f"{self.n_train} train / {self.n_holdout} held out",
            f"held-out accuracy {self.holdout_accuracy:.3f}, log loss {self.holdout_log_loss:.3f}",
            f"temperature {self.temperature:.3f}: ECE {self.ece_before:.3f} -> {self.ece_after:.3f}",
            f"drivers (mean |SHAP|, log-odds): {top}",
        ]


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


def _log_loss(logits: np.ndarray, outcome: np.ndarray) -> float:
    sign = 2.0 * np.asarray(outcome, np.float64) - 1.0
    return float(np.mean(np.logaddexp(0.0, -sign * logits)))


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
    for each feature ``[z, sign(z) * max(|z| - k, 0) for k in knots]``. Odd, so ``basis(-z) == -basis(z)``."""
    z = np.asarray(z, np.float64)
    cols = [z[:, :, None]] + [(np.sign(z) * np.maximum(np.abs(z) - k, 0.0))[:, :, None] for k in knots]
    return np.concatenate(cols, axis=2).reshape(z.shape[0], -1)


def shap_values(z: np.ndarray, knots: Sequence[float], coef: np.ndarray) -> np.ndarray:
    """(N, F) standardised differences -> (N, F) SHAP values of the linear model ``coef`` over their spline
    terms, each feature's terms summed (SHAP values add). Baseline: zero difference, where the model is 0.

    ``shap.LinearExplainer`` with a single all-zero background row: exact, and instant.
    """
    import shap

    z = np.asarray(z, np.float64)
    basis = spline_basis(z, knots)
    explainer = shap.LinearExplainer((np.asarray(coef, np.float64), 0.0), np.zeros((1, basis.shape[1])))
    values = np.asarray(explainer.shap_values(basis)).reshape(z.shape[0], z.shape[1], -1)
    return values.sum(axis=2)


# --------------------------------------------------------------------------------------------- rows


def _number(value: Any) -> float | None:
    """A finite float, or None for anything else (None, NaN, strings, bools)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _side(row: Mapping[str, Any], side: str, feature: str) -> float | None:
    if feature.startswith(PARAM_PREFIX):
        return _number((row.get(f"{side}_params") or {}).get(feature[len(PARAM_PREFIX):]))
    return _number((row.get(f"{side}_metrics") or {}).get(feature))


def differences(rows: Sequence[Mapping[str, Any]], features: Sequence[str]) -> np.ndarray:
    """(N, F) float64 of feature(A) - feature(B); NaN where either side lacks a finite value."""
    out = np.full((len(rows), len(features)), np.nan)
    for i, row in enumerate(rows):
        for j, feat in enumerate(features):
            a, b = _side(row, "a", feat), _side(row, "b", feat)
            if a is not None and b is not None:
                out[i, j] = a - b
    return out


def _standardise(diff: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """Differences over their scale; a missing one counts as 0, no evidence either way."""
    return np.nan_to_num(diff / np.asarray(scale, np.float64), nan=0.0)


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


# --------------------------------------------------------------------------------------------- model


def default_path() -> Path:
    """Where the studio keeps its preference model: ``studio_home()/preference/model.json``."""
    return studio_home() / "preference" / "model.json"


@dataclass(frozen=True)
class PreferenceModel:
    """A fitted preference model (see the module docstring). Build with :meth:`fit` or :meth:`load`.

    ``features``: metric names, then ``param:NAME`` for numeric style parameters. ``scale``: per feature,
    the root mean square of its difference on the training fold (no centring: that would break
    ``P(B > A) = 1 - P(A > B)``). ``coef``: ``len(features) * (1 + len(knots))`` weights, feature-major.
    """

    features: tuple[str, ...]
    scale: tuple[float, ...]
    knots: tuple[float, ...]
    coef: tuple[float, ...]
    temperature: float
    report: FitReport

    # ---- fitting

    @classmethod
    def fit(cls, rows: Sequence[Mapping[str, Any]], config: PreferenceConfig | None = None) -> PreferenceModel:
        """Fit on feedback rows (the ``ab_dataset()`` contract); ties dropped.

        Raises :class:`NotEnoughRatingsError` below ``config.min_ratings`` decisive, measured ratings or
        when a fold would hold only one outcome; :class:`ConfigError` for a choice that is not A, B or tie.
        """
        from sklearn.linear_model import LogisticRegression

        cfg = config or PreferenceConfig()
        kept, y, ties = _decisive(rows)
        features = _candidate_features(kept, cfg.min_coverage)
        diff = differences(kept, features)
        measured = ~np.all(np.isnan(diff), axis=1) if features else np.zeros(len(kept), bool)
        unmeasured = int(np.count_nonzero(~measured))
        kept, y, diff = [r for r, m in zip(kept, measured, strict=True) if m], y[measured], diff[measured]
        if len(kept) < cfg.min_ratings:
            raise NotEnoughRatingsError(
                f"the preference model needs at least {cfg.min_ratings} A/B ratings with a winner and metrics; "
                f"got {len(kept)} ({ties} ties and {unmeasured} with no metric or parameter to compare left out). "
                "Rate more pairs first")
        train, held = _split(y, cfg.holdout, cfg.seed)
        for name, fold in (("training", train), ("held-out", held)):
            if len(np.unique(y[fold])) < 2:
                raise NotEnoughRatingsError(
                    f"the {name} fold of {len(kept)} ratings holds only one outcome "
                    f"({int(y.sum())} x A, {int(len(y) - y.sum())} x B): rate pairs where each side wins")
        present = ~np.isnan(diff[train])
        scale = np.sqrt(np.nansum(diff[train] ** 2, axis=0) / np.maximum(present.sum(axis=0), 1))
        scale[~(scale > 0)] = 1.0  # a feature that never moves in the training fold gets weight 0 anyway
        knots = tuple(float(k) for k in cfg.knots)
        reg = LogisticRegression(C=cfg.C, fit_intercept=False, max_iter=5000)
        z = _standardise(diff, scale)
        reg.fit(spline_basis(z[train], knots), y[train])
        coef = reg.coef_[0]
        raw_held = spline_basis(z[held], knots) @ coef
        temperature = fit_temperature(raw_held, y[held])
        shap_all = shap_values(z, knots, coef / temperature)
        drivers = sorted(zip(features, np.abs(shap_all).mean(axis=0).tolist(), strict=True),
                         key=lambda kv: -kv[1])
        cal_held = raw_held / temperature
        report = FitReport(
            n_rows=len(rows), n_ties=ties, n_unmeasured=unmeasured, n_train=len(train), n_holdout=len(held),
            temperature=temperature,
            holdout_accuracy=float(np.mean((cal_held > 0) == (y[held] == 1))),
            holdout_log_loss=_log_loss(cal_held, y[held]),
            ece_before=expected_calibration_error(sigmoid(raw_held), y[held], cfg.ece_bins),
            ece_after=expected_calibration_error(sigmoid(cal_held), y[held], cfg.ece_bins),
            drivers=tuple((name, float(v)) for name, v in drivers))
        return cls(features=tuple(features), scale=tuple(float(v) for v in scale), knots=knots,
                   coef=tuple(float(c) for c in coef), temperature=temperature, report=report)

    # ---- prediction

    def logits(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(N,) calibrated log-odds that A is preferred over B, for rows shaped like feedback rows."""
        z = _standardise(differences(rows, self.features), self.scale)
        return spline_basis(z, self.knots) @ np.asarray(self.coef) / self.temperature

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(N,) calibrated P(A preferred over B) in (0, 1); ``choice`` is not needed."""
        return sigmoid(self.logits(rows))

    def prob(self, a_metrics: Mapping[str, float], b_metrics: Mapping[str, float],
             a_params: Mapping[str, Any] | None = None, b_params: Mapping[str, Any] | None = None) -> float:
        """P(A preferred over B) for one pair given as metric (and parameter) dicts."""
        row = {"a_metrics": a_metrics, "b_metrics": b_metrics, "a_params": a_params or {}, "b_params": b_params or {}}
        return float(self.predict_proba([row])[0])

    # ---- explanation

    def explain(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
        """Per row, SHAP value per feature: its push on the calibrated log-odds of "A preferred", from 0
        (A and B alike). The values of a row sum to its :meth:`logits` value."""
        z = _standardise(differences(rows, self.features), self.scale)
        values = shap_values(z, self.knots, np.asarray(self.coef) / self.temperature)
        return [dict(zip(self.features, v.tolist(), strict=True)) for v in values]

    @property
    def drivers(self) -> tuple[tuple[str, float], ...]:
        """Global drivers: (feature, mean |SHAP|) over the ratings it was fitted on, largest first."""
        return self.report.drivers

    # ---- persistence

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data: every number the model needs (features, scaler, spline, weights, T, report)."""
        report = asdict(self.report)
        report["drivers"] = [list(d) for d in self.report.drivers]
        return {"format": FORMAT_VERSION, "kind": "bradley-terry additive logistic",
                "features": list(self.features), "scale": list(self.scale), "knots": list(self.knots),
                "coef": list(self.coef), "temperature": self.temperature, "report": report}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: str = "preference model") -> PreferenceModel:
        """Inverse of :meth:`to_json`; a ConfigError naming ``source`` for anything inconsistent."""
        try:
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {data.get('format')!r}, expected {FORMAT_VERSION}")
            features = tuple(str(f) for f in data["features"])
            scale = tuple(float(s) for s in data["scale"])
            knots = tuple(float(k) for k in data["knots"])
            coef = tuple(float(c) for c in data["coef"])
            temperature = float(data["temperature"])
            rep = dict(data["report"])
            rep["drivers"] = tuple((str(n), float(v)) for n, v in rep["drivers"])
            report = FitReport(**rep)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a preference model ({exc})") from None
        if len(scale) != len(features) or len(coef) != len(features) * (1 + len(knots)):
            raise ConfigError(f"{source}: {len(features)} features but {len(scale)} scales and {len(coef)} weights")
        if not (temperature > 0 and all(math.isfinite(v) for v in (*scale, *coef, temperature))):
            raise ConfigError(f"{source}: temperature and weights must be finite, temperature > 0")
        return cls(features=features, scale=scale, knots=knots, coef=coef, temperature=temperature, report=report)

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
            raise ConfigError(f"{src}: no preference model yet (fit one from at least {MIN_RATINGS} A/B ratings)")
        try:
            data = json.loads(src.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{src}: cannot read the preference model ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{src}: not a preference model (expected a JSON object)")
        return cls.from_json(data, str(src))

