"""Auto-tuner: the space from Params metadata, grid/random search on synthetic objectives with known optima,
infeasible candidates, A/B pair proposals, the studio objective end to end on a small clip, the styles'
floors (what makes each style itself) on synthetic and real clips, and the printed line rendering."""

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
    TuneResult,
    flicker_fidelity,
    grid_size,
    local_space,
    metric_distances,
    plan,
    plan_around,
    propose_pairs,
    search,
    space_from_params,
    tune,
)
from core.learn.preference import PreferenceConfig, PreferenceModel
from core.quality.metrics import METRIC_NAMES
from core.render.spec import build_job
from scripts.cli import main
from stylizers import STYLIZERS, get_style
from stylizers.base import Styled
from stylizers.cartoon import CartoonParams
from stylizers.signature import Floor
from tests.conftest import MEDIA, need_shared


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


def _random_candidates(n: int, seed: int = 0) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    return [Candidate(point={"i": i}, score=0.0, metrics={"warping_error": float(rng.uniform(0.01, 0.06)),
                                                         "sharpness": float(rng.uniform(50, 400))})
            for i in range(n)]


def test_propose_pairs_least_certain(preference: PreferenceModel) -> None:
    cands = _random_candidates(8)
    cands.append(Candidate(point={"i": 8}, score=None, feasible=False, reason="not measured"))
    # outside the style's floors: measured, yet never offered
    cands.append(Candidate(point={"i": 9}, score=-0.9, feasible=False, reason="outline density 0 below the floor",
                           metrics={"warping_error": 0.03, "sharpness": 200.0}))
    cands.append(Candidate(point={"i": 10}, score=0.0, metrics=dict(cands[0].metrics)))  # cands[0]'s twin
    pairs = propose_pairs(preference, cands, 5)
    assert len(pairs) == 5 and all(p.a.metrics and p.b.metrics and p.a.feasible and p.b.feasible for p in pairs)
    assert all(p.a.point["i"] != 9 and p.b.point["i"] != 9 for p in pairs)
    assert not any({p.a.point["i"], p.b.point["i"]} == {0, 10} for p in pairs)  # alike: a rating teaches nothing
    gaps = [abs(p.p_a - 0.5) for p in pairs]
    assert gaps == sorted(gaps)
    eligible = [c for c in cands if c.feasible and c.metrics]
    dist = metric_distances(eligible)
    every = [abs(preference.prob(a.metrics, b.metrics) - 0.5) for i, a in enumerate(eligible)
             for j, b in enumerate(eligible) if j > i and dist[i, j] >= 0.25]
    assert gaps[0] == pytest.approx(min(every))  # the least certain pair comes first
    assert propose_pairs(preference, cands[:1], 3) == []


def test_propose_pairs_diverse(preference: PreferenceModel) -> None:
    # evenly spread: every two are far enough apart, so four pairs can offer eight different candidates
    cands = [Candidate(point={"i": i}, score=0.0, metrics={"warping_error": 0.01 * (i + 1), "sharpness": 100.0 + i})
             for i in range(8)]
    pairs = propose_pairs(preference, cands, 4)
    used = [c.point["i"] for p in pairs for c in (p.a, p.b)]
    assert len(pairs) == 4 and sorted(used) == list(range(8))  # each candidate in exactly one pair


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
    assert res.reference == res.base.metrics  # no --set: the base is the style's defaults
    feasible = [c for c in res.candidates if c.feasible]
    assert [c.score for c in feasible] == sorted(flicker_fidelity(c.metrics, res.reference, 0.5) for c in feasible)
    assert res.base.score == pytest.approx(1.0)
    for c in res.candidates:
        keeps = _keeps_floors(res, c)
        calmer = c.metrics["warping_error"] <= res.reference["warping_error"]
        assert c.feasible == (c.metrics["edge_coherence"] >= res.edge_floor and keeps and calmer)
        assert c.feasible or "below the floor" in c.reason or "above the defaults'" in c.reason
        if c.point["line_width"] == 0:  # no outlines: never feasible, whatever it scores
            assert not c.feasible and "outline density 0 below the floor" in c.reason
    text = "\n".join(res.lines())
    assert "grid search" in text and "base" in text and "outline_density >= " in text


def test_tune_preference_objective(clip: Path, preference: PreferenceModel) -> None:
    pytest.importorskip("core.learn.sampling", reason="core/learn/sampling.py (worst_frames) has not landed yet")
    res = tune(clip, "cartoon", budget=4, restrict={"n_colors": "6,10", "line_width": "0,3"}, config=SMALL,
               model=preference, pairs=2)
    assert res.objective == "preference" and res.edge_floor is None
    assert all(-1 < c.score < 0 for c in res.candidates)
    assert res.base.score == pytest.approx(-0.5)  # the base against itself: a coin flip
    for c in res.candidates:  # the style's floors hold for the preference objective too
        assert c.feasible == _keeps_floors(res, c)
        if c.point["line_width"] == 0:
            assert not c.feasible and "outline density" in c.reason
    assert 1 <= len(res.pairs) <= 2 and all(p.a.feasible and p.b.feasible for p in res.pairs)
    assert [abs(p.p_a - 0.5) for p in res.pairs] == sorted(abs(p.p_a - 0.5) for p in res.pairs)
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


# --------------------------------------------------------------------------------------------- the styles' floors


def _keeps_floors(res: TuneResult, c: Candidate) -> bool:
    """Whether ``c`` keeps every floor of its style against the defaults' figures, computed here afresh."""
    for f in get_style(res.style).floors:
        value, ref = c.metrics.get(f.measure), res.reference.get(f.measure)
        lo, hi = f.bounds(ref)
        if value is None or value < lo or (hi is not None and value > hi):
            return False
    return True


def test_every_style_declares_measurable_floors() -> None:
    from core.video.synthetic import ClipSpec, scene_frame

    rgb = scene_frame(ClipSpec(), 3)
    lines = np.zeros(rgb.shape[:2], np.float32)
    for name, cls in STYLIZERS.items():
        measured = cls.measures(rgb, Styled(base=rgb, lines=lines), rgb)
        assert all(isinstance(v, float) for v in measured.values()), name
        for f in cls.floors:
            assert f.measure in measured or f.measure in METRIC_NAMES, (name, f.measure)
            assert 0 < f.low <= 1 and (f.high is None or f.high >= 1), (name, f)
        if name != "none":  # a look of its own: something must keep it from blurring or fading away
            assert any(f.measure == "sharpness" for f in cls.floors), name
    assert {f.measure for f in STYLIZERS["cartoon"].floors} == {"outline_density", "sharpness"}
    assert {f.measure for f in STYLIZERS["comic"].floors} == {"outline_density", "sharpness"}
    assert {f.measure for f in STYLIZERS["pencil"].floors} == {"stroke_density", "sharpness"}
    assert {"luma_mean", "contrast", "saturation"} <= {f.measure for f in STYLIZERS["cinematic"].floors}


def test_floor_breach_names_the_floor_and_the_figures() -> None:
    f = Floor("outline_density", 0.8)
    assert f.breach(0.05, 0.05) == "" and f.breach(0.041, 0.05) == ""
    assert f.breach(0.0, 0.05) == "outline density 0 below the floor 0.04 (0.8x the defaults' 0.05)"
    assert f.breach(None, 0.05) == "outline density not measured" and f.breach(0.0, None) == ""
    band = Floor("contrast", 0.8, 1.25, slack=0.01)
    assert band.bounds(0.2) == (pytest.approx(0.15), pytest.approx(0.26))
    assert band.breach(0.3, 0.2) == "contrast 0.3 above the ceiling 0.26 (1.25x the defaults' 0.2)"
    assert band.breach(0.005, 0.0) == ""  # a grey clip's saturation: the slack, not a ratio of 0
    assert band.describe(0.2) == "contrast in 0.15..0.26" and f.describe(0.05) == "outline_density >= 0.04"


def _window_metrics(params: CartoonParams) -> dict[str, float]:
    """The tuner's measures of cartoon ``params`` on three frames of the synthetic scene."""
    from core.learn.autotune import Window, measure
    from core.presets import Preset
    from core.video.synthetic import ClipSpec, scene_frame
    from stylizers.cartoon import Cartoon

    spec = ClipSpec()
    frames = tuple((i, scene_frame(spec, i)) for i in range(3))
    shared = Cartoon.analyze(params, [rgb for _, rgb in frames])
    return measure(Cartoon, params, shared, [Window(target=2, frames=frames)], Preset().temporal, SMALL)


def test_blurred_cartoon_is_infeasible() -> None:
    """A cartoon with its outlines off and smoothed flat flickers less, and is refused by name and figures."""
    from core.learn.autotune import floor_breaches
    from stylizers.cartoon import Cartoon

    ref = _window_metrics(CartoonParams())
    blurred = _window_metrics(CartoonParams(line_width=0, smooth_iterations=12, smooth_scale=4, smooth_color=200.0))
    assert blurred["warping_error"] < ref["warping_error"]  # what the tuner used to "win" by
    assert blurred["sharpness"] < 0.5 * ref["sharpness"] and ref["outline_density"] > 0.01
    reasons = floor_breaches(Cartoon.floors, blurred, ref)
    assert reasons[0] == (f"outline density 0 below the floor {0.8 * ref['outline_density']:.4g} "
                          f"(0.8x the defaults' {ref['outline_density']:.4g})")
    assert reasons[1].startswith(f"sharpness {blurred['sharpness']:.4g} below the floor")
    assert floor_breaches(Cartoon.floors, ref, ref) == []


def test_local_space_and_plan_around() -> None:
    space = space_from_params(CartoonParams)
    base = {d.name: getattr(CartoonParams(), d.name) for d in space}
    near = {d.name: d for d in local_space(space, base)}
    assert (near["edge_high"].low, near["edge_high"].high) == (80, 180)  # 10 % of 1..1000 around 130
    assert (near["line_width"].low, near["line_width"].high) == (1, 3) and near["smooth_scale"].values == (1, 2, 4)
    mode, points = plan_around(space, base, 10, seed=0, check=lambda p: CartoonParams(**p))
    assert mode == "random+local" and len(points) == 10 and len({tuple(p.values()) for p in points}) == 10
    ranged = [d for d in near.values() if d.low is not None]
    inside = [p for p in points if all(d.low <= p[d.name] <= d.high for d in ranged)]
    assert len(inside) >= 8  # three quarters of the budget near the base


@pytest.mark.parametrize("style, restrict", [
    ("cartoon", None),
    ("comic", None),
    ("pencil", None),
    ("cinematic", {"grain": "0:0.6", "vignette": "0:1", "bloom": "0:1"}),  # the grade table baked once
])
def test_tune_keeps_the_style_on_synthetic_clips(clip: Path, style: str, restrict: dict | None) -> None:
    res = tune(clip, style, budget=6, restrict=restrict, config=SMALL, seed=1)
    assert set(res.floors) == {f.measure for f in get_style(style).floors}
    assert all(f in res.reference for f in res.floors)
    for c in res.candidates:
        keeps = _keeps_floors(res, c)
        assert not c.feasible or keeps, (c.point, c.metrics)
        if not keeps:
            assert any((f.label or f.measure.replace("_", " ")) in c.reason for f in get_style(style).floors)
        elif (c.metrics["edge_coherence"] >= res.edge_floor
              and c.metrics.get("warping_error", np.inf) <= res.reference["warping_error"]):
            assert c.feasible, c.reason
    if res.best_sets():  # what the tuner prints renders
        build_job(clip, clip.with_suffix(".o.mp4"), style, "balanced", dict(kv.split("=", 1) for kv in res.best_sets()))


# --------------------------------------------------------------------------------------------- the printed line


def test_printed_line_is_valid_as_a_whole(clip: Path) -> None:
    """``edge_low=306`` before ``edge_high=400`` passes through edge_low > edge_high (130) on the way: the set
    is taken as a whole, in any order, and a set invalid as a whole is still refused by name."""
    best = Candidate(point={"edge_low": 306, "edge_high": 400}, score=0.5)
    base = Candidate(point={"edge_low": 50, "edge_high": 130}, score=1.0)
    res = TuneResult(style="cartoon", mode="grid", objective="metrics", candidates=[best], base=base, edge_floor=None,
                     frames=(1,), sets={"line_width": "3", "edge_low": "1"})
    assert res.best_sets() == ["line_width=3", "edge_low=306", "edge_high=400"]
    assert "best: --set line_width=3 --set edge_low=306 --set edge_high=400" in res.lines()
    for order in (res.best_sets(), res.best_sets()[::-1]):
        params = build_job(clip, clip.with_suffix(".o.mp4"), "cartoon", "balanced",
                           dict(kv.split("=", 1) for kv in order)).params
        assert (params.edge_low, params.edge_high, params.line_width) == (306, 400, 3)
    with pytest.raises(ConfigError, match=r"edge_low \(306\) must not exceed edge_high \(200\)"):
        build_job(clip, clip.with_suffix(".o.mp4"), "cartoon", "balanced", {"edge_low": "306", "edge_high": "200"})
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        build_job(clip, clip.with_suffix(".o.mp4"), "cartoon", "balanced", {"nope": "1", "edge_low": "7"})


# --------------------------------------------------------------------------------------------- on a real clip


def test_real_clip_cartoon_keeps_outlines(tmp_path: Path) -> None:
    """On a real clip the tuner lowers the warping error of cartoon's defaults while keeping its outlines and
    its sharpness, and the line it prints renders through the CLI."""
    need_shared()
    from core.video.synthetic import ClipSpec, make_clip

    res = tune(MEDIA / "imageio_realshort.mp4", "cartoon", budget=12,
               config=TuneConfig(frames=2, warmup=1, long_side=160))
    best = next(c for c in res.candidates if c.feasible)
    ref = res.reference
    assert best.metrics["outline_density"] >= 0.8 * ref["outline_density"] > 0
    assert best.metrics["sharpness"] >= 0.8 * ref["sharpness"]
    assert best.metrics["warping_error"] < ref["warping_error"]
    line = next(t for t in res.lines() if t.startswith("best: "))
    sets = line.removeprefix("best: ").split()
    assert sets[0::2] == ["--set"] * len(res.best_sets())
    small = make_clip(tmp_path / "small.mp4", ClipSpec(frames=6, width=96, height=64))
    out = tmp_path / "out.mp4"
    assert main(["render", str(small), "-o", str(out), "--style", "cartoon", *sets, "-q", "--workers", "1"]) == 0
    assert out.is_file() and out.stat().st_size > 0
