"""The benchmark's reduced form, as CI runs it: ``python -m scripts.bench --quick`` renders every style and the
speed preset beside FFmpeg's own transcode of the same clip and prints each ratio, without touching the
published figures (a 60-frame run's ratios carry more start-up than a full run's)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys

from scripts.bench.measure import ROOT
from scripts.bench.speed import CLASSICAL


def _digest() -> str:
    return hashlib.sha256((ROOT / "docs" / "perf" / "benchmark.json").read_bytes()).hexdigest()


def test_quick_prints_every_ratio_and_publishes_nothing() -> None:
    before = _digest()
    out = subprocess.run([sys.executable, "-m", "scripts.bench", "--quick"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert _digest() == before, "--quick must not replace the published figures"
    if shutil.which("ffmpeg") is None:
        assert "no ffmpeg binary on PATH" in text
        return
    ratio = r"(\d+\.\d+) fps vs ffmpeg +(\d+\.\d+) fps -> (\d+\.\d+)x"
    for style in CLASSICAL:
        for preset in ("balanced", "speed"):
            m = re.search(rf"{style} 720p +{preset}: +{ratio} \(goal >= [\d.]+x: (met|NOT met)\)", text)
            assert m, f"no {style}/{preset} ratio in:\n{text}"
            ours, theirs, x = (float(g) for g in m.groups()[:3])
            assert ours > 0 and theirs > 0 and abs(ours / theirs - x) < 0.01
    assert re.search(r"identity 720p, 60 frames: [\d.]+ fps vs ffmpeg CLI [\d.]+ fps -> [\d.]+x", text), text
