"""Preference model: a synthetic rater with a known rule, calibration, SHAP drivers, refusal, JSON round trip.

The rater prefers the candidate with less flicker (lower ``warping_error``) unless that candidate is much
blurrier (``sharpness`` lower by more than ``SHARP_DROP``), in which case the sharper one wins. Its
perception of flicker is slightly noisy, as a person's is. Rows follow the ``ab_dataset()`` contract.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.errors import ConfigError, StudioError
from core.learn.preference import (
    MIN_RATINGS,
    NotEnoughRatingsError,
    PreferenceConfig,
    PreferenceModel,
    default_path,
    expected_calibration_error,
    fit_temperature,
    sigmoid,
    spline_basis,
)

SHARP_DROP = 200.0


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
    assert rep.n_rows == 625 and rep.n_ties == 25 and rep.n_train + rep.n_holdout == 600
    assert fitted.temperature > 0
    assert "warping_error" in fitted.features and "param:n_colors" in fitted.features
    assert "param:mode" not in fitted.features  # strings are not numeric features
    assert len(rep.lines()) == 4


def test_accuracy_and_calibration_on_unseen_ratings(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    p = fitted.predict_proba(test_rows)
    y = _outcome(test_rows)
    accuracy = float(np.mean((p > 0.5) == (y == 1)))
    ece = expected_calibration_error(p, y)
    print(f"held-out accuracy {accuracy:.3f}, ECE {ece:.3f}, T {fitted.temperature:.3f}; "
          f"fit report: {fitted.report.lines()}")
    assert accuracy >= 0.9
    assert ece <= 0.05
    assert fitted.report.holdout_accuracy >= 0.9  # the fit's own fold agrees (its ECE, on 180 rows, is noisier)


def test_shap_ranks_the_rules_metric_first(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    names = [name for name, _ in fitted.drivers]
    assert names[:2] == ["warping_error", "sharpness"]
    # per-prediction explanations add up to the calibrated log-odds
    values = fitted.explain(test_rows[:50])
    sums = np.array([sum(v.values()) for v in values])
    np.testing.assert_allclose(sums, fitted.logits(test_rows[:50]), atol=1e-9)
    top = [max(v, key=lambda k: abs(v[k])) for v in values]
    assert top.count("warping_error") > len(top) / 2


def test_symmetry(fitted: PreferenceModel, test_rows: list[dict]) -> None:
    """Swapping A and B gives 1 - P; identical candidates give exactly 0.5."""
    swapped = [{"a_metrics": r["b_metrics"], "b_metrics": r["a_metrics"], "a_params": r["b_params"],
                "b_params": r["a_params"]} for r in test_rows[:100]]
    np.testing.assert_allclose(fitted.predict_proba(swapped), 1 - fitted.predict_proba(test_rows[:100]), atol=1e-12)
    m = test_rows[0]["a_metrics"]
    assert fitted.prob(m, m) == 0.5


def test_exception_below_minimum() -> None:
    rows = rated_rows(MIN_RATINGS - 1, seed=3, ties=10)  # ties do not count
    with pytest.raises(NotEnoughRatingsError, match=rf"at least {MIN_RATINGS} A/B ratings.*got {MIN_RATINGS - 1}"):
        PreferenceModel.fit(rows)
    with pytest.raises(StudioError):  # catchable as the family and as ValueError
        PreferenceModel.fit([])


def test_exception_unmeasured_rows_do_not_count() -> None:
    rows = rated_rows(MIN_RATINGS - 5, seed=6)
    blank = {"a_metrics": {}, "b_metrics": {}, "a_params": {}, "b_params": {}}  # renders never measured
    rows += [{**r, **blank, "id": 1000 + i} for i, r in enumerate(rated_rows(10, seed=8))]
    with pytest.raises(NotEnoughRatingsError, match="10 with no metric or parameter to compare"):
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
    assert data["features"] == list(fitted.features) and data["temperature"] == fitted.temperature
    loaded = PreferenceModel.load()
    assert loaded == fitted
    np.testing.assert_array_equal(loaded.predict_proba(test_rows[:20]), fitted.predict_proba(test_rows[:20]))
    assert not list(path.parent.glob("*.tmp"))


def test_load_exception(tmp_path) -> None:
    with pytest.raises(ConfigError, match="no preference model yet"):
        PreferenceModel.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 1, "features": ["x"], "scale": [1.0], "knots": [], "coef": [1.0, 2.0],
                               "temperature": 1.0, "report": {}}))
    with pytest.raises(ConfigError, match=str(bad)):
        PreferenceModel.load(bad)


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
    assert model.report.n_train + model.report.n_holdout == 25


def test_cli_feedback_fit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`feedback fit` trains on the store's ratings and saves the model the tuner loads; too few: exit 2."""
    from core.learn import feedback
    from scripts.cli import main

    monkeypatch.setattr(feedback, "ab_dataset", lambda: rated_rows(5, seed=3))
    assert main(["feedback", "fit"]) == 2
    assert "rating" in capsys.readouterr().err
    monkeypatch.setattr(feedback, "ab_dataset", lambda: rated_rows(300, seed=3))
    assert main(["feedback", "fit"]) == 0
    out = capsys.readouterr().out
    assert "saved the preference model" in out and default_path().is_file()
    assert PreferenceModel.load().drivers[0][0].startswith("warping_error")
