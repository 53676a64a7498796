"""Preference model: simulated raters with known rules, recorded through the Style Lab's own path, model
selection against the best single metric, SHAP naming the rule, uncertainty, refusal, JSON round trip.

The raters judge **real measured renders**: a few synthetic clips stylised with random cartoon, pencil and comic
parameters and measured with :class:`MetricsMeter` over consecutive frames (so the temporal metrics are
there), once per module. A rater compares two variants of one clip and style, as an artist tuning a style in
the Style Lab does, by a utility over the metrics on the model's own scales (log for the scale-like ones),
perceived with Gaussian noise sized so that 10 % of its choices go against its rule (a person errs on close
calls, not at random). Its 60 choices are stored with :func:`core.learn.feedback.record_ab` and read back
with :func:`ab_dataset`.

"Held-out accuracy" in the rater tests is the expected share of the rater's choices the model predicts on
every pair of the table it did not rate (expected over the rater's noise, so the figure itself is exact).

``rated_rows`` (uniform random metrics, "less flicker unless much blurrier") stays for the auto-tuner's tests.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import fields, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, StudioError
from core.learn.preference import (
    FORMAT_VERSION,
    MIN_RATINGS,
    NotEnoughRatingsError,
    PreferenceConfig,
    PreferenceModel,
    default_path,
    expected_calibration_error,
    fit_temperature,
    shap_values,
    sigmoid,
    spline_basis,
    transform_of,
    usable_ratings,
)

SHARP_DROP = 200.0


# --------------------------------------------------------------------------------------------- rated_rows


def _candidate(rng: np.random.Generator) -> tuple[dict[str, float], dict[str, object]]:
    metrics = {
        "warping_error": float(rng.uniform(0.01, 0.06)),
        "sharpness": float(rng.uniform(50.0, 400.0)),
        "edge_coherence": float(rng.uniform(0.3, 0.9)),
        "ssim": float(rng.uniform(0.4, 0.9)),
        "colourfulness": float(rng.uniform(10.0, 80.0)),
    }
    params = {"n_colors": int(rng.integers(2, 33)), "smooth_color": float(rng.uniform(1, 200)), "mode": "x"}
    return metrics, params


def _rater(a: dict[str, float], b: dict[str, float], rng: np.random.Generator) -> str:
    """The known rule: less flicker wins, unless the less flickery one is much less sharp."""
    a_less_flicker = a["warping_error"] + rng.normal(0, 0.002) < b["warping_error"] + rng.normal(0, 0.002)
    winner, loser = (a, b) if a_less_flicker else (b, a)
    if winner["sharpness"] < loser["sharpness"] - SHARP_DROP:
        a_less_flicker = not a_less_flicker
    return "A" if a_less_flicker else "B"


def rated_rows(n: int, seed: int, ties: int = 0) -> list[dict]:
    """``n`` decisive rows (and ``ties`` ties) of uniformly random candidates judged by :func:`_rater`."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        (am, ap), (bm, bp) = _candidate(rng), _candidate(rng)
        rows.append({"id": i, "a_metrics": am, "b_metrics": bm, "a_params": ap, "b_params": bp,
                     "choice": _rater(am, bm, rng), "rating": None})
    for i in range(ties):
        (am, ap), (bm, bp) = _candidate(rng), _candidate(rng)
        rows.append({"id": n + i, "a_metrics": am, "b_metrics": bm, "a_params": ap, "b_params": bp,
                     "choice": "tie", "rating": 3})
    return rows


# --------------------------------------------------------------------------------------------- measured variants

STYLES = ("cartoon", "pencil", "comic")
CLIPS, PER_STYLE, FRAMES = 2, 10, 3
#: rater -> weights on standardised metric differences (on the model's scales: log for scale-like metrics)
RATERS = {
    "less flicker": {"warping_error": -1.0},
    "sharper": {"sharpness": 1.0},
    "more colourful": {"colourfulness": 1.0},
    "sharper and more colourful": {"sharpness": 0.5, "colourfulness": 0.5},
}
SINGLE = [name for name, rule in RATERS.items() if len(rule) == 1]
N_RATINGS, NOISE = 60, 0.10


def _random_params(cls: type, rng: np.random.Generator) -> object:
    """Random numeric parameters within each field's range (capped at 4x the default, where artists work)."""
    params = cls.Params()
    sets = {}
    for f in fields(params):
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if f.name == "seed" or lo is None or hi is None:
            continue
        default = getattr(params, f.name)
        if isinstance(default, int):
            sets[f.name] = int(rng.integers(lo, min(hi, 4 * max(default, 1)) + 1))
        else:
            sets[f.name] = float(rng.uniform(lo, min(hi, 4 * max(default, 0.1))))
    if "edge_low" in sets:
        sets["edge_low"], sets["edge_high"] = sorted((sets["edge_low"], sets["edge_high"]))
        sets["edge_high"] += sets["edge_low"] == sets["edge_high"]
    return replace(params, **sets)


@pytest.fixture(scope="module")
def variants() -> list[dict]:
    """Measured renders: per clip and style, ``PER_STYLE`` random parameter sets, each rendered over
    ``FRAMES`` consecutive frames and measured (metrics averaged; a metric never measured is absent)."""
    from core.quality.metrics import METRIC_NAMES, MetricsMeter
    from core.video.synthetic import ClipSpec, scene_frame
    from stylizers import STYLIZERS

    rng = np.random.default_rng(0)
    out = []
    for clip in range(CLIPS):
        spec = ClipSpec(width=128, height=96, seed=clip)
        frames = [scene_frame(spec, 5 * clip + i) for i in range(FRAMES)]
        for style in STYLES:
            cls = STYLIZERS[style]
            for _ in range(PER_STYLE):
                params = _random_params(cls, rng)
                stylizer = cls(params, cls.analyze(params, frames[::2]))
                meter = MetricsMeter()
                outs = [stylizer(f, i) for i, f in enumerate(frames)]
                measured = [meter.update(i, f, o) for i, (f, o) in enumerate(zip(frames, outs, strict=True))]
                metrics = {}
                for name in METRIC_NAMES:
                    values = [getattr(m, name) for m in measured if getattr(m, name) is not None]
                    if values:
                        metrics[name] = float(np.mean(values))
                out.append({"clip": f"synthetic{clip}.mp4", "style": style, "metrics": metrics,
                            "params": {f.name: getattr(params, f.name) for f in fields(params)},
                            "input": frames[-1], "output": outs[-1]})
    return out


def _pairs(variants: list[dict]) -> list[tuple[int, int]]:
    return [(i, j) for i, j in combinations(range(len(variants)), 2)
            if (variants[i]["clip"], variants[i]["style"]) == (variants[j]["clip"], variants[j]["style"])]


class SimulatedRater:
    """A rule over metric differences and a noise level fitted so ``NOISE`` of its choices on the table's
    pairs go against the rule."""

    def __init__(self, rule: dict[str, float], variants: list[dict]) -> None:
        self.rule, self.variants = rule, variants
        value = {n: np.array([self._scaled(v["metrics"], n) for v in variants]) for n in rule}
        self.sd = {n: float(np.std(v)) for n, v in value.items()}
        gaps = np.abs([self.gap(i, j) for i, j in _pairs(variants)])
        lo, hi = 1e-6, 100.0
        for _ in range(60):  # bisect sigma: the share of choices against the rule grows with it
            sigma = math.sqrt(lo * hi)
            lo, hi = (sigma, hi) if self._against(gaps, sigma) < NOISE else (lo, sigma)
        self.sigma = math.sqrt(lo * hi)

    @staticmethod
    def _scaled(metrics: dict[str, float], name: str) -> float:
        kind, offset = transform_of(name)
        return math.log(max(metrics[name], 0.0) + offset) if kind == "log" else metrics[name]

    @staticmethod
    def _against(gaps: np.ndarray, sigma: float) -> float:
        from scipy.stats import norm

        return float(norm.cdf(-gaps / sigma).mean())

    def gap(self, i: int, j: int) -> float:
        """Utility of variant i minus variant j."""
        a, b = self.variants[i]["metrics"], self.variants[j]["metrics"]
        return sum(w * (self._scaled(a, n) - self._scaled(b, n)) / self.sd[n] for n, w in self.rule.items())

    def choose(self, i: int, j: int, rng: np.random.Generator) -> str:
        return "A" if self.gap(i, j) + self.sigma * rng.normal() > 0 else "B"

    def p_a(self, i: int, j: int) -> float:
        """P(this rater picks i over j)."""
        from scipy.stats import norm

        return float(norm.cdf(self.gap(i, j) / self.sigma))


def _row(variants: list[dict], i: int, j: int) -> dict:
    a, b = variants[i], variants[j]
    return {"a_metrics": a["metrics"], "b_metrics": b["metrics"], "a_params": a["params"], "b_params": b["params"]}


def record_ratings(variants: list[dict], rater: SimulatedRater, n: int, seed: int, db: Path
                   ) -> tuple[list[dict], list[tuple[int, int]]]:
    """``n`` ratings of distinct random pairs stored through the Style Lab's path into ``db``; returns the
    store's A/B dataset and the pairs never rated."""
    from core.learn import feedback
    from core.learn.feedback import Variant

    rng = np.random.default_rng(seed)
    pairs = _pairs(variants)
    picked = rng.choice(len(pairs), n, replace=False)
    for k in picked:
        i, j = pairs[k] if rng.random() < 0.5 else pairs[k][::-1]
        a, b = variants[i], variants[j]
        feedback.record_ab(a["clip"], FRAMES - 1, Variant(a["style"], a["params"], metrics=a["metrics"]),
                           Variant(b["style"], b["params"], metrics=b["metrics"]), a["output"], b["output"],
                           a["input"], choice=rater.choose(i, j, rng), rater="simulated", rating=4, db_path=db)
    unrated = [p for k, p in enumerate(pairs) if k not in set(picked.tolist())]
    return feedback.ab_dataset(db_path=db), unrated


def expected_accuracy(predict_a: np.ndarray, rater: SimulatedRater, pairs: list[tuple[int, int]]) -> float:
    """Expected share of the rater's choices matched by predictions ``predict_a`` (True: A) on ``pairs``."""
    p = np.array([rater.p_a(i, j) for i, j in pairs])
    return float(np.mean(np.where(predict_a, p, 1.0 - p)))


def _draw(variants: list[dict], name: str, rater: SimulatedRater, seed: int, db: Path) -> dict:
    """One rater's ``N_RATINGS`` ratings (draw ``seed``), the model fitted on them, and the expected accuracy of
    the model and of the best single metric (fitted on the same ratings) on the pairs it never rated."""
    rows, unrated = record_ratings(variants, rater, N_RATINGS, seed=seed, db=db)
    model = PreferenceModel.fit(rows)
    test = [_row(variants, i, j) for i, j in unrated]
    accuracy = expected_accuracy(model.logits(test) > 0, rater, unrated)
    # the best single metric, fitted on the same ratings: a one-feature odd logistic predicts by the sign of
    # the difference, in the direction the ratings agree with
    base = model.report.baseline
    diff = np.array([r["a_metrics"][base] - r["b_metrics"][base] for r in rows if r["choice"] != "tie"])
    won = np.array([r["choice"] == "A" for r in rows if r["choice"] != "tie"])
    direction = 1.0 if np.mean((diff > 0) == won) >= 0.5 else -1.0
    test_diff = np.array([t["a_metrics"][base] - t["b_metrics"][base] for t in test])
    base_accuracy = expected_accuracy(direction * test_diff > 0, rater, unrated)
    print(f"{name} (draw {seed}): {model.report.winner} {accuracy:.3f} vs {base} alone {base_accuracy:.3f}; "
          f"top driver {model.drivers[0][0]}; ECE {model.report.ece_before:.3f} -> {model.report.ece_after:.3f}")
    return {"rows": rows, "model": model, "accuracy": accuracy, "baseline_accuracy": base_accuracy}


#: independent rating sessions per rater. One draw of 60 noisy ratings can favour a richer model or the single
#: metric by chance: over these 12, a richer model won 3-6 times for each one-metric rater and did 0-6 % worse
#: than the metric alone on the pairs it never rated (mean -0.020 for "less flicker", -0.003 "sharper", -0.002
#: "more colourful"; +0.107 for the two-metric rater), so the figures are judged on the mean over the draws
DRAWS = 12


@pytest.fixture(scope="module")
def raters(variants: list[dict], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Per rater: the first draw's rows and model (for the explanation tests), and every draw's figures on the
    pairs it never rated."""
    out = {}
    for k, (name, rule) in enumerate(RATERS.items()):
        rater = SimulatedRater(rule, variants)
        draws = [_draw(variants, name, rater, 100 * d + k, tmp_path_factory.mktemp("ratings") / "studio.db")
                 for d in range(DRAWS)]
        out[name] = {**draws[0], "draws": draws}
    return out


@pytest.mark.parametrize("name", list(RATERS))
def test_rater_accuracy_at_least_the_best_single_metric(raters: dict[str, dict], name: str) -> None:
    fit = raters[name]
    rep = fit["model"].report
    print("\n".join(rep.lines()))
    assert rep.n_ratings == N_RATINGS
    accuracy = np.mean([d["accuracy"] for d in fit["draws"]])
    baseline = np.mean([d["baseline_accuracy"] for d in fit["draws"]])
    assert accuracy >= baseline - 0.03, (accuracy, baseline)
    assert accuracy >= 0.85  # the ceiling is 0.90: the rater itself goes against its rule 10 % of the time
    assert 0.0 <= rep.holdout_accuracy <= 1.0 and 0.0 <= rep.baseline_accuracy <= 1.0


@pytest.mark.parametrize("name", SINGLE)
def test_rater_shap_names_the_rule(raters: dict[str, dict], name: str) -> None:
    model = raters[name]["model"]
    (rule_metric,) = RATERS[name]
    assert model.drivers[0][0] == rule_metric
    tops = [max(v, key=lambda k: abs(v[k])) for v in model.explain(raters[name]["rows"])]
    assert tops.count(rule_metric) > len(tops) / 2  # per rating too, not only on average


def test_rater_mix_needs_both_metrics(raters: dict[str, dict]) -> None:
    """The mixed rule is not one metric: the model uses both, and beats either alone."""
    model = raters["sharper and more colourful"]["model"]
    assert {"sharpness", "colourfulness"} <= set(model.features)
    assert not model.report.winner.startswith("single")


@pytest.mark.parametrize("name", list(RATERS))
def test_rater_calibration_is_reported(raters: dict[str, dict], name: str) -> None:
    rep = raters[name]["model"].report
    assert 0.0 <= rep.ece_before <= 1.0 and 0.0 <= rep.ece_after <= 1.0
    assert f"ECE {rep.ece_before:.3f} -> {rep.ece_after:.3f}" in "\n".join(rep.lines())


def test_old_records_without_temporal_metrics(raters: dict[str, dict]) -> None:
    """Single-frame records (before ratings moved to clips) have no temporal metric: no evidence either way."""
    rows = [dict(r) for r in raters["less flicker"]["rows"]]
    temporal = {"warping_error", "temporal_ssim", "flat_flicker"}
    for r in rows[::3]:
        r["a_metrics"] = {k: v for k, v in r["a_metrics"].items() if k not in temporal}
        r["b_metrics"] = {k: v for k, v in r["b_metrics"].items() if k not in temporal}
    model = PreferenceModel.fit(rows)
    assert model.drivers[0][0] == "warping_error"
    assert model.prob(rows[0]["a_metrics"], rows[0]["a_metrics"]) == 0.5
    assert usable_ratings(rows) == N_RATINGS


# --------------------------------------------------------------------------------------------- rated_rows model


@pytest.fixture(scope="module")
def fitted() -> PreferenceModel:
    return PreferenceModel.fit(rated_rows(600, seed=1, ties=25))


@pytest.fixture(scope="module")
def test_rows() -> list[dict]:
    return rated_rows(3000, seed=99)


def _outcome(rows: list[dict]) -> np.ndarray:
    return np.array([r["choice"] == "A" for r in rows], float)


def test_smoke(fitted: PreferenceModel) -> None:
    rep = fitted.report
    assert rep.n_rows == 625 and rep.n_ties == 25 and rep.n_ratings == 600 and rep.n_train + rep.n_holdout == 600
    assert fitted.temperature > 0 and fitted.kind == rep.winner
    candidates = [name for name, _ in rep.cv]
    assert "linear+params" in candidates and "single: warping_error" in candidates  # parameters were candidates
    assert not any("param:mode" in name for name in candidates)  # strings are not numeric features
    assert len(rep.lines()) == 5 and rep.winner in rep.lines()[1]


def test_accuracy_and_calibration_on_unseen_ratings(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    p = fitted.predict_proba(test_rows)
    y = _outcome(test_rows)
    accuracy = float(np.mean((p > 0.5) == (y == 1)))
    ece = expected_calibration_error(p, y)
    print(f"held-out accuracy {accuracy:.3f}, ECE {ece:.3f}, T {fitted.temperature:.3f}; "
          f"fit report: {fitted.report.lines()}")
    assert accuracy >= 0.9
    assert ece <= 0.05
    assert fitted.report.holdout_accuracy >= 0.88  # the fit's own fold agrees (180 rows: noisier)


def test_shap_ranks_the_rules_metric_first(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    names = [name for name, _ in fitted.drivers]
    assert names[0] == "warping_error" and "sharpness" in names[:2]
    # per-prediction explanations add up to the calibrated log-odds
    values = fitted.explain(test_rows[:50])
    sums = np.array([sum(v.values()) for v in values])
    np.testing.assert_allclose(sums, fitted.logits(test_rows[:50]), atol=1e-9)
    top = [max(v, key=lambda k: abs(v[k])) for v in values]
    assert top.count("warping_error") > len(top) / 2


def test_shap_values_match_shap_linear_explainer() -> None:
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(0)
    z, knots = rng.normal(size=(20, 3)), (0.5, 1.0)
    coef = rng.normal(size=3 * (1 + len(knots)))
    basis = spline_basis(z, knots)
    explainer = shap.LinearExplainer((coef, 0.0), np.zeros((1, basis.shape[1])))
    expected = np.asarray(explainer.shap_values(basis)).reshape(20, 3, -1).sum(axis=2)
    np.testing.assert_allclose(shap_values(z, knots, coef), expected, atol=1e-12)


def test_symmetry(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    """Swapping A and B gives 1 - P; identical candidates give exactly 0.5."""
    swapped = [{"a_metrics": r["b_metrics"], "b_metrics": r["a_metrics"], "a_params": r["b_params"],
                "b_params": r["a_params"]} for r in test_rows[:100]]
    np.testing.assert_allclose(fitted.predict_proba(swapped), 1 - fitted.predict_proba(test_rows[:100]), atol=1e-12)
    m = test_rows[0]["a_metrics"]
    assert fitted.prob(m, m) == 0.5


def test_uncertainty(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    """The logit's standard error: 0 for identical candidates, larger for bigger differences, smaller with
    more ratings; the interval holds the probability."""
    pred = fitted.predict(test_rows[:200])
    np.testing.assert_array_equal(pred.p, fitted.predict_proba(test_rows[:200]))
    assert np.all(pred.logit_se > 0) and np.all(np.isfinite(pred.logit_se))
    low, high = pred.interval()
    assert np.all((low <= pred.p) & (pred.p <= high))
    m = test_rows[0]["a_metrics"]
    assert fitted.predict([{"a_metrics": m, "b_metrics": m}]).logit_se[0] == 0.0
    few = PreferenceModel.fit(rated_rows(60, seed=1), PreferenceConfig(seed=1))
    assert np.median(few.predict(test_rows[:200]).logit_se) > np.median(pred.logit_se)


def test_exception_below_minimum() -> None:
    rows = rated_rows(MIN_RATINGS - 1, seed=3, ties=10)  # ties do not count
    with pytest.raises(NotEnoughRatingsError,
                       match=rf"not enough ratings yet \({MIN_RATINGS - 1} of {MIN_RATINGS}\): rate 1 more") as err:
        PreferenceModel.fit(rows)
    assert (err.value.have, err.value.need) == (MIN_RATINGS - 1, MIN_RATINGS)
    assert usable_ratings(rows) == MIN_RATINGS - 1
    with pytest.raises(StudioError):  # catchable as the family and as ValueError
        PreferenceModel.fit([])


def test_exception_unmeasured_rows_do_not_count() -> None:
    rows = rated_rows(MIN_RATINGS - 5, seed=6)
    blank = {"a_metrics": {}, "b_metrics": {}, "a_params": {}, "b_params": {}}  # renders never measured
    rows += [{**r, **blank, "id": 1000 + i} for i, r in enumerate(rated_rows(10, seed=8))]
    with pytest.raises(NotEnoughRatingsError, match=r"rate 5 more.*10 ratings with no metric to compare"):
        PreferenceModel.fit(rows)


def test_exception_one_sided_and_bad_choice() -> None:
    rows = rated_rows(60, seed=4)
    for r in rows:
        r["choice"] = "A"
    with pytest.raises(NotEnoughRatingsError, match="only one outcome"):
        PreferenceModel.fit(rows)
    rows[5]["choice"] = "left"
    with pytest.raises(ConfigError, match="rating 5: choice 'left'"):
        PreferenceModel.fit(rows)


def test_missing_metrics_are_no_evidence(fitted: PreferenceModel) -> None:
    a = {"warping_error": 0.02, "sharpness": None}
    b = {"warping_error": 0.05}
    assert fitted.prob(a, b) > 0.5  # sharpness missing on one side counts as no difference


def test_save_load_roundtrip(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    path = fitted.save()
    assert path == default_path() and path.is_file()
    data = json.loads(path.read_text())  # plain JSON, no pickle
    assert data["format"] == FORMAT_VERSION and data["features"] == list(fitted.features)
    assert data["temperature"] == fitted.temperature
    loaded = PreferenceModel.load()
    assert loaded == fitted
    np.testing.assert_array_equal(loaded.predict_proba(test_rows[:20]), fitted.predict_proba(test_rows[:20]))
    np.testing.assert_array_equal(loaded.predict(test_rows[:20]).logit_se, fitted.predict(test_rows[:20]).logit_se)
    assert not list(path.parent.glob("*.tmp"))


def test_load_exception(tmp_path: Path, fitted: PreferenceModel) -> None:
    with pytest.raises(ConfigError, match="no preference model yet"):
        PreferenceModel.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    data = fitted.to_json()
    bad.write_text(json.dumps({**data, "coef": data["coef"] + [1.0]}))
    with pytest.raises(ConfigError, match=str(bad)):
        PreferenceModel.load(bad)
    old = tmp_path / "old.json"  # the layout of format 1
    old.write_text(json.dumps({"format": 1, "kind": "bradley-terry additive logistic", "features": ["x"],
                               "scale": [1.0], "knots": [], "coef": [1.0], "temperature": 1.0, "report": {}}))
    with pytest.raises(ConfigError, match=r"old format 1.*refit.*feedback fit") as err:
        PreferenceModel.load(old)
    assert "\n" not in str(err.value)


def test_temperature_and_ece_helpers() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < sigmoid(z)).astype(float)
    assert fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.15)  # over-confident logits -> T ~ 3
    assert expected_calibration_error(sigmoid(z), y) < 0.03
    assert expected_calibration_error(np.full(10, 0.9), np.zeros(10)) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="same length"):
        expected_calibration_error(np.zeros(3), np.zeros(4))
    zb = rng.normal(size=(5, 3))
    np.testing.assert_array_equal(spline_basis(-zb, (0.5, 1.0)), -spline_basis(zb, (0.5, 1.0)))


def test_config_min_ratings() -> None:
    rows = rated_rows(25, seed=5)
    model = PreferenceModel.fit(rows, PreferenceConfig(min_ratings=20))
    assert model.report.n_train + model.report.n_holdout == model.report.n_ratings == 25


def test_fit_time_500_ratings() -> None:
    """The goal is <= 2 s (the benchmark's loop section reports the figure); asserted loosely, machines vary."""
    rows = rated_rows(500, seed=11)
    start = time.perf_counter()
    PreferenceModel.fit(rows)
    took = time.perf_counter() - start
    print(f"fit on 500 ratings: {took:.2f} s")
    assert took < 10


def test_cli_feedback_fit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`feedback fit` trains on the store's ratings, prints the report and saves the model the tuner loads;
    too few: exit 2 with how many more are needed."""
    from core.learn import feedback
    from scripts.cli import main

    monkeypatch.setattr(feedback, "ab_dataset", lambda: rated_rows(5, seed=3))
    assert main(["feedback", "fit"]) == 2
    assert f"not enough ratings yet (5 of {MIN_RATINGS})" in capsys.readouterr().err
    monkeypatch.setattr(feedback, "ab_dataset", lambda: rated_rows(300, seed=3))
    assert main(["feedback", "fit"]) == 0
    out = capsys.readouterr().out
    assert "saved the preference model" in out and default_path().is_file()
    assert "held-out accuracy" in out and "ECE" in out and "300 behind the model" in out
    assert PreferenceModel.load().drivers[0][0].startswith("warping_error")
