"""The ``profile`` section: where each millisecond of a frame goes, in this checkout and in an earlier commit.

``python -m scripts.bench --only profile --baseline REF`` checks REF out into a temporary git worktree and
measures each classical style's stage costs (:func:`core.render.chunk.stage_costs`, one loop over the 720p
clip, CPU ms per frame, in a fresh process tuned like a pool worker) there and here, alternating, ``--repeat``
rounds (medians). The README shows both side by side, so a speed-up (or a slow-down) is seen stage by stage,
measured on one machine in one run. Without ``--baseline`` only this checkout is measured.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path

from scripts.bench.figures import STAGES
from scripts.bench.measure import ROOT, Bench
from scripts.bench.speed import CLASSICAL
from scripts.bench.stages import _stage_costs, part_ms


def _median(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rounds) for k in STAGES}


def profile(bench: Bench) -> None:
    """Each classical style's stage costs here, and at ``bench.baseline`` (a git ref) when given."""
    report, clip = bench.report, bench.clips[720]
    styles = [s for s in bench.styles if s in CLASSICAL]
    with tempfile.TemporaryDirectory(prefix="vp-baseline-") as tmp:
        trees = {"after": ROOT}
        sec: dict = {"repeat": bench.repeat, "styles": {}}
        if bench.baseline:
            base = Path(tmp) / "tree"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), bench.baseline], cwd=ROOT,
                           check=True, capture_output=True)
            commit = subprocess.run(["git", "rev-parse", "--short", bench.baseline], cwd=ROOT, check=True,
                                    capture_output=True, text=True).stdout.strip()
            trees = {"before": base, "after": ROOT}
            sec["baseline"] = commit
        try:
            print(f"\nprofile, 720p, CPU ms per frame (one loop, {bench.frames} frames)"
                  + (f": {sec['baseline']} (before) beside this checkout (after)" if bench.baseline else ""))
            for style in styles:
                rounds: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
                for i in range(bench.repeat):
                    for name in sorted(trees, reverse=i % 2 == 1):  # the other one first every other round
                        rounds[name].append(part_ms(_stage_costs(clip, style, trees[name])))
                got = {name: _median(r) for name, r in rounds.items()}
                sec["styles"][style] = got
                for name, parts in got.items():
                    print(f"  {style:>9} {name:>6}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items())
                          + f" = {sum(parts.values()):.1f} ms")
        finally:
            if bench.baseline:
                subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, capture_output=True)
    report["profile"] = sec
