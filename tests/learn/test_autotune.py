"""Auto-tuner: the space from Params metadata, grid/random search on synthetic objectives with known optima,
infeasible candidates, A/B pair proposals, and the studio objective end to end on a small clip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigError, MediaNotFoundError
from core.learn.autotune import (
    UNTUNED,
    Candidate,
    Evaluation,
    TuneConfig,
    grid_size,
    plan,
    propose_pairs,
    search,
    space_from_params,
    tune,
)
from core.learn.preference import PreferenceConfig, PreferenceModel
from scripts.cli import main
from stylizers.cartoon import CartoonParams


@dataclass(frozen=True)
class ToyParams:
    x: float = field(default=0.0, metadata={"min": -2.0, "max": 3.0})
    n: int = field(default=5, metadata={"min": 0, "max": 20})
    mode: str = field(default="a", metadata={"choices": ("a", "b", "c")})
    flag: bool = False
    label: str = "free text"
    seed: int = field(default=0, metadata={"min": 0, "max": 100})


def toy_objective(p: dict) -> float:
    """Known optimum: x = 1, n = 10, mode = "b" (score 0)."""
    return (p["x"] - 1) ** 2 + (p["n"] - 10) ** 2 / 25 + (p["mode"] != "b")


class Counting:
    def __init__(self, fn) -> None:
        self.fn, self.calls = fn, 0

    def __call__(self, p: dict):
        self.calls += 1
        return self.fn(p)


def test_smoke() -> None:
    space = space_from_params(ToyParams)
    assert [d.name for d in space] == ["x", "n", "mode"]  # no bool, free str or seed
    assert space[0].values == (-2.0, -0.75, 0.5, 1.75, 3.0) and space[1].values == (0, 5, 10, 15, 20)
    assert space[2].kind == "choice" and space[2].values == ("a", "b", "c")
    assert grid_size(space) == 75
    cartoon = {d.name: d for d in space_from_params(CartoonParams)}
    assert "seed" in UNTUNED and "seed" not in cartoon
    assert cartoon["smooth_scale"].values == (1, 2, 4) and cartoon["n_colors"].low == 2


def test_grid_finds_known_optimum_within_budget() -> None:
    space = space_from_params(ToyParams, {"x": "-2:3:6", "n": "0:20:5", "mode": "a,b,c"})
    assert grid_size(space) == 90
    objective = Counting(toy_objective)
    ranked = search(space, objective, budget=100, seed=0)
    assert plan(space, 100)[0] == "grid" and objective.calls == 90 <= 100
    assert ranked[0].point == {"x": 1.0, "n": 10, "mode": "b"} and ranked[0].score == 0.0
    assert [c.score for c in ranked] == sorted(c.score for c in ranked)


def test_random_search_within_budget() -> None:
    space = space_from_params(ToyParams)
    objective = Counting(toy_objective)
    ranked = search(space, objective, budget=60, seed=0)
    assert plan(space, 60)[0] == "random" and objective.calls == len(ranked) == 60
    assert len({tuple(c.point.values()) for c in ranked}) == 60  # distinct points
    # stratified: every choice dealt out evenly, the range covered end to end
    modes = [c.point["mode"] for c in ranked]
    assert sorted(modes.count(m) for m in "abc") == [20, 20, 20]
    xs = np.array([c.point["x"] for c in ranked])
    assert np.histogram(xs, bins=5, range=(-2, 3))[0].min() >= 10
    best = [search(space, toy_objective, budget=60, seed=s)[0] for s in range(10)]
    assert sum(b.point["mode"] == "b" for b in best) >= 9
    assert np.median([b.score for b in best]) < 0.5  # default params score 3.0
    # seeded: the same seed gives the same points, another seed others
    assert [c.point for c in search(space, toy_objective, 60, seed=0)] == [c.point for c in ranked]
    assert [c.point for c in search(space, toy_objective, 60, seed=1)] != [c.point for c in ranked]


def test_infeasible_candidates_rank_last_with_reason() -> None:
    space = space_from_params(ToyParams, {"x": "-2:3:6", "n": "0,10"})

    def objective(p: dict) -> Evaluation | float:
        if p["x"] < -1:
            raise ConfigError(f"toy: x {p['x']} is refused with n {p['n']}")
        if p["x"] > 2:
            return Evaluation(score=0.0, feasible=False, reason="too bright")
        return toy_objective({**p, "mode": "b"})

    ranked = search(space, objective, budget=12)
    feasible = [c for c in ranked if c.feasible]
    assert len(feasible) == 8 and ranked[:8] == feasible
    assert ranked[0].point == {"x": 1.0, "n": 10}
    reasons = {c.reason for c in ranked[8:]}
    assert reasons == {"toy: x -2.0 is refused with n 0", "toy: x -2.0 is refused with n 10", "too bright"}


def test_check_replaces_refused_points() -> None:
    space = space_from_params(ToyParams, {"x": "-2:3", "n": "0:20"})

    def check(p: dict) -> None:
        if p["n"] > 10:
            raise ConfigError("n above 10")

    mode, points = plan(space, 10, seed=0, check=check)
    assert mode == "random" and len(points) == 10 and all(p["n"] <= 10 for p in points)
    # a grid whose valid points fit the budget is searched whole; refused points are listed, not evaluated
    mode, points = plan(space_from_params(ToyParams, {"n": "0:20:5"}), 3, check=check)
    assert mode == "grid" and len(points) == 5


@pytest.mark.parametrize("spec, match", [
    ({"nope": "1:2"}, r"unknown parameter 'nope' \(known: .*x"),
    ({"x": "0:9"}, r"--param x=0:9: 9.0 is above the maximum 3.0"),
    ({"x": "2:1"}, "the low end 2.0 is above the high end 1.0"),
    ({"n": "1.5:4"}, "'1.5' is not an integer"),
    ({"n": "1:4:1"}, "steps must be at least 2"),
    ({"n": "1:2:3:4"}, "expected LO:HI or LO:HI:STEPS"),
    ({"mode": "a,z"}, "'z' is not one of a, b, c"),
    ({"mode": "a:c"}, "list them as a,b,c"),
    ({"flag": "0,1"}, "flag is not a number or a word"),
    ({"x": ","}, "no value given"),
])
def test_exception_space(spec: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        space_from_params(ToyParams, spec)


def test_exception_budget() -> None:
    with pytest.raises(ConfigError, match="budget: expected at least 1 evaluation, got 0"):
        plan(space_from_params(ToyParams), 0)


def test_restricted_space() -> None:
    space = space_from_params(CartoonParams, {"n_colors": "4:12:5", "line_width": "1,2,3", "smooth_scale": "1:2"})
    assert [(d.name, d.values) for d in space] == [
        ("n_colors", (4, 6, 8, 10, 12)), ("line_width", (1, 2, 3)), ("smooth_scale", (1, 2))]
    assert grid_size(space) == 30


@pytest.fixture(scope="module")
def preference() -> PreferenceModel:
    from tests.learn.test_preference import rated_rows

    return PreferenceModel.fit(rated_rows(200, seed=7), PreferenceConfig())


def test_propose_pairs_least_certain(preference: PreferenceModel) -> None:
    rng = np.random.default_rng(0)
    cands = [Candidate(point={"i": i}, score=0.0,
                       metrics={"warping_error": float(rng.uniform(0.01, 0.06)),
                                "sharpness": float(rng.uniform(50, 400))}) for i in range(8)]
    cands.append(Candidate(point={"i": 8}, score=None, feasible=False, reason="not measured"))
    pairs = propose_pairs(preference, cands, 5)
    assert len(pairs) == 5 and all(p.a.metrics and p.b.metrics for p in pairs)
    gaps = [abs(p.p_a - 0.5) for p in pairs]
    assert gaps == sorted(gaps)
    every = [abs(preference.prob(a.metrics, b.metrics) - 0.5) for i, a in enumerate(cands[:8]) for b in cands[i + 1:8]]
    assert gaps[0] == pytest.approx(min(every)) and gaps[-1] <= sorted(every)[4] + 1e-12
    assert propose_pairs(preference, cands[:1], 3) == []


# --------------------------------------------------------------------------------------------- on a clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.video.synthetic import ClipSpec, make_clip

    return make_clip(tmp_path_factory.mktemp("autotune") / "cut.mp4", ClipSpec(frames=40, cut_at=21, gop=10))


SMALL = TuneConfig(frames=2, warmup=1, long_side=160)


def test_tune_metric_objective(clip: Path) -> None:
    pytest.importorskip("core.learn.sampling", reason="core/learn/sampling.py (worst_frames) has not landed yet")
    seen = []
    res = tune(clip, "cartoon", budget=4, restrict={"n_colors": "4,8", "line_width": "0,2"}, config=SMALL,
               on_progress=lambda done, total: seen.append((done, total)))
    assert res.mode == "grid" and res.objective == "metrics" and len(res.candidates) == 4
    assert seen[-1] == (5, 5) and len(res.frames) >= 1  # the base counts as one evaluation
    for c in [res.base, *res.candidates]:
        assert {"warping_error", "edge_coherence", "sharpness"} <= set(c.metrics)
        assert c.params["smooth_iterations"] == 4  # unsearched params stay at the base
    assert res.edge_floor == pytest.approx(0.8 * res.base.metrics["edge_coherence"])
    feasible = [c for c in res.candidates if c.feasible]
    assert [c.score for c in feasible] == sorted(c.metrics["warping_error"] for c in feasible)
    for c in res.candidates:
        assert c.feasible == (c.metrics["edge_coherence"] >= res.edge_floor)
        assert c.feasible or "below the floor" in c.reason
    text = "\n".join(res.lines())
    assert "grid search" in text and "base" in text


def test_tune_preference_objective(clip: Path, preference: PreferenceModel) -> None:
    pytest.importorskip("core.learn.sampling", reason="core/learn/sampling.py (worst_frames) has not landed yet")
    res = tune(clip, "cartoon", budget=3, restrict={"smooth_iterations": "0,2,8"}, config=SMALL, model=preference,
               pairs=2)
    assert res.objective == "preference" and res.edge_floor is None
    assert all(-1 < c.score < 0 for c in res.candidates)
    assert res.base.score == pytest.approx(-0.5)  # the base against itself: a coin flip
    assert len(res.pairs) == 2 and abs(res.pairs[0].p_a - 0.5) <= abs(res.pairs[1].p_a - 0.5)
    assert set(res.why) == set(preference.features)  # SHAP of the best candidate against the base
    assert "why #1 over base" in "\n".join(res.lines()) and "rate next:" in "\n".join(res.lines())


def test_exception_input(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError):
        tune(tmp_path / "missing.mp4", "cartoon")


def test_cli(clip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["autotune", str(clip), "--style", "cartoon", "--param", "n_colors=1:4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --param n_colors=1:4: 1 is below the minimum 2"
    assert main(["autotune", str(clip), "--style", "cartoon", "--param", "n_colors"]) == 2
    assert "expected NAME=LO:HI[:STEPS] or NAME=A,B,C" in capsys.readouterr().err
    assert main(["autotune", str(clip) + ".nope", "--style", "cartoon"]) == 2
    assert main(["autotune", str(clip), "--style", "nope"]) == 2
    assert main(["autotune", str(clip), "--style", "cartoon", "--budget", "0"]) == 2
    assert main(["autotune", str(clip), "--style", "cartoon", "--objective", "preference"]) == 2
    assert "no preference model yet" in capsys.readouterr().err
    pytest.importorskip("core.learn.sampling", reason="core/learn/sampling.py (worst_frames) has not landed yet")
    assert main(["autotune", str(clip), "--style", "cartoon", "--budget", "2", "--frames", "2",
                 "--param", "line_width=1,3", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:3] == ["rank", "score", "line_width"]
    assert "best: --set line_width=" in out or "no feasible candidate" in out
